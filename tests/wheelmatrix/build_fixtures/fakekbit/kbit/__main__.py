import json

from kbit import libraries

print(json.dumps({"libraries": libraries()}))

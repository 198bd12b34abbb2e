#include <cmath>

#include "qext.h"

namespace qext {

float quantize_int8(const std::vector<float>& x, std::vector<int8_t>& q) {
  float absmax = 0.0f;
  for (float v : x) absmax = std::fmax(absmax, std::fabs(v));
  q.assign(x.size(), 0);
  if (absmax == 0.0f) return 0.0f;
  const float scale = absmax / 127.0f;
  for (size_t i = 0; i < x.size(); ++i) {
    float r = std::nearbyint(x[i] / scale);
    q[i] = static_cast<int8_t>(std::fmax(-127.0f, std::fmin(127.0f, r)));
  }
  return scale;
}

}  // namespace qext

# Cross-compile kbit for 64-bit Windows with mingw-w64 (Debian: apt-get install g++-mingw-w64-x86-64).
#   _PYTHON_HOST_PLATFORM=win-amd64 python -m build --wheel \
#       -C cmake.args=--toolchain=cmake/mingw-w64-x86_64.cmake
# gives kbit-<v>-py3-none-win_amd64.whl holding kbit/_lib/libkbit_cpu.dll + libkbit_cpu.json.
# The CUDA backend cannot be cross-built this way (nvcc needs MSVC on Windows).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

set(_kbit_mingw_prefix x86_64-w64-mingw32)
# Debian ships -posix and -win32 thread-model variants; kbit needs no C++ threads, either works.
find_program(CMAKE_C_COMPILER NAMES ${_kbit_mingw_prefix}-gcc ${_kbit_mingw_prefix}-gcc-posix REQUIRED)
find_program(CMAKE_CXX_COMPILER NAMES ${_kbit_mingw_prefix}-g++ ${_kbit_mingw_prefix}-g++-posix REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${_kbit_mingw_prefix}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${_kbit_mingw_prefix})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

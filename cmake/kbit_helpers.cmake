# Helpers for kbit's CMakeLists.txt: CUDA arch lists, the zig link route, the manifest.

# nvcc's version ("13.0") before enable_language(CUDA), to choose default archs.
function(kbit_probe_nvcc_version out_var)
  if(NOT CMAKE_CUDA_COMPILER)
    check_language(CUDA)
  endif()
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "kbit: KBIT_BACKEND=cuda but no nvcc was found; pass "
                        "-DCMAKE_CUDA_COMPILER=/path/to/nvcc (or put nvcc on PATH)")
  endif()
  execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --version
                  OUTPUT_VARIABLE _out ERROR_VARIABLE _err RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0 OR NOT _out MATCHES "release ([0-9]+\\.[0-9]+)")
    message(FATAL_ERROR "kbit: '${CMAKE_CUDA_COMPILER} --version' failed (${_rc}): ${_out}${_err}")
  endif()
  set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

# SASS/PTX lists: validated integers, sorted, unique; defaults by CUDA version when empty.
function(kbit_default_archs version sass ptx out_sass out_ptx)
  if(sass STREQUAL "")
    if(version VERSION_GREATER_EQUAL 13.0)
      set(sass 75 80 86 89 90 100 120)
    elseif(version VERSION_GREATER_EQUAL 12.8)
      set(sass 50 60 70 75 80 86 89 90 100 120)
    elseif(version VERSION_GREATER_EQUAL 11.8)
      set(sass 50 60 70 75 80 86 89 90)
    else()
      set(sass 50 60 70 75 80 86)
    endif()
  endif()
  string(REPLACE "," ";" sass "${sass}")
  string(REPLACE " " ";" sass "${sass}")
  string(REPLACE "," ";" ptx "${ptx}")
  string(REPLACE " " ";" ptx "${ptx}")
  list(REMOVE_ITEM sass "")
  list(REMOVE_ITEM ptx "")
  foreach(a IN LISTS sass ptx)
    if(NOT a MATCHES "^[1-9][0-9]+$")
      message(FATAL_ERROR "kbit: CUDA arch '${a}' in KBIT_CUDA_SASS/KBIT_CUDA_PTX is not a "
                          "compute capability number like 75 or 120")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES sass)
  list(SORT sass COMPARE NATURAL)
  if(ptx STREQUAL "")
    list(GET sass -1 ptx)
  endif()
  list(REMOVE_DUPLICATES ptx)
  list(SORT ptx COMPARE NATURAL)
  set(${out_sass} "${sass}" PARENT_SCOPE)
  set(${out_ptx} "${ptx}" PARENT_SCOPE)
endfunction()

# "75;120" + "120" -> "75-real;120-real;120-virtual" (a bare 120 would mean both).
function(kbit_cuda_architectures sass ptx out_var)
  set(_archs "")
  foreach(a IN LISTS sass)
    list(APPEND _archs "${a}-real")
  endforeach()
  foreach(a IN LISTS ptx)
    list(APPEND _archs "${a}-virtual")
  endforeach()
  set(${out_var} "${_archs}" PARENT_SCOPE)
endfunction()

# The final link through `zig cc -target <arch>-linux-gnu.<glibc>` over the objects compiled by
# gcc/nvcc: the library then binds only glibc symbols that exist in that glibc version
# (docs/kbit-build.md). Defines the target `kbit` and KBIT_ZIG_TARGET in the caller's scope.
function(kbit_zig_link)
  cmake_parse_arguments(Z "" "STEM;OUTPUT_DIR;GLIBC;CUDART;MAP" "" ${ARGN})
  if(KBIT_ZIG)
    set(_zig ${KBIT_ZIG})
    list(LENGTH _zig _n)
    if(_n EQUAL 1 AND NOT EXISTS "${KBIT_ZIG}" AND KBIT_ZIG MATCHES " ")
      separate_arguments(_zig NATIVE_COMMAND "${KBIT_ZIG}") # "python -m ziglang"
    endif()
  else()
    find_program(KBIT_ZIG_EXECUTABLE zig)
    if(KBIT_ZIG_EXECUTABLE)
      set(_zig "${KBIT_ZIG_EXECUTABLE}")
    else()
      find_package(Python3 COMPONENTS Interpreter)
      set(_zig "${Python3_EXECUTABLE}" -m ziglang)
    endif()
  endif()
  execute_process(COMMAND ${_zig} version OUTPUT_VARIABLE _zig_version
                  ERROR_VARIABLE _zig_err RESULT_VARIABLE _rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "kbit: KBIT_LINK_GLIBC=${Z_GLIBC} needs zig, but '${_zig} version' "
                        "failed (${_rc}${_zig_err}); pip install ziglang and pass "
                        "-DKBIT_ZIG=<path to zig> or -DKBIT_ZIG=\"python;-m;ziglang\"")
  endif()
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    set(_arch x86_64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set(_arch aarch64)
  else()
    message(FATAL_ERROR "kbit: no zig target for processor ${CMAKE_SYSTEM_PROCESSOR}")
  endif()
  set(_target "${_arch}-linux-gnu.${Z_GLIBC}")
  set(_name "lib${Z_STEM}.so")
  set(_out "${Z_OUTPUT_DIR}/${_name}")
  set(_libs "")
  if(Z_CUDART)
    get_target_property(_loc ${Z_CUDART} IMPORTED_LOCATION)
    if(NOT _loc)
      get_target_property(_loc ${Z_CUDART} IMPORTED_LOCATION_RELEASE)
    endif()
    list(APPEND _libs "${_loc}")
    if(Z_CUDART STREQUAL "CUDA::cudart_static")
      list(APPEND _libs -lpthread -ldl -lrt)
    else()
      string(REGEX MATCH "^[0-9]+" _major "${CMAKE_CUDA_COMPILER_VERSION}")
      list(APPEND _libs "-Wl,-rpath,$ORIGIN/../../nvidia/cu${_major}/lib:$ORIGIN/../../nvidia/cuda_runtime/lib")
    endif()
  endif()
  file(MAKE_DIRECTORY "${Z_OUTPUT_DIR}")
  add_custom_command(
    OUTPUT "${_out}"
    COMMAND ${_zig} cc -target ${_target} -shared -o "${_out}" "-Wl,-soname,${_name}"
            "-Wl,--version-script=${Z_MAP}" -Wl,-z,noexecstack -Wl,--as-needed -Wl,--strip-all
            "$<TARGET_OBJECTS:kbit_objects>" ${_libs}
    DEPENDS "$<TARGET_OBJECTS:kbit_objects>" "${Z_MAP}"
    COMMAND_EXPAND_LISTS VERBATIM
    COMMENT "Linking ${_name} with zig ${_zig_version} for ${_target}")
  add_custom_target(kbit ALL DEPENDS "${_out}")
  add_dependencies(kbit kbit_objects)
  set(KBIT_ZIG_TARGET "${_target}" PARENT_SCOPE)
endfunction()

function(_kbit_json_list out_var)
  set(_items "")
  foreach(v IN LISTS ARGN)
    list(APPEND _items "${v}")
  endforeach()
  list(JOIN _items ", " _joined)
  set(${out_var} "[${_joined}]" PARENT_SCOPE)
endfunction()

function(_kbit_json_strings out_var)
  set(_items "")
  foreach(v IN LISTS ARGN)
    string(REPLACE "\\" "\\\\" v "${v}")
    string(REPLACE "\"" "\\\"" v "${v}")
    list(APPEND _items "\"${v}\"")
  endforeach()
  list(JOIN _items ", " _joined)
  set(${out_var} "[${_joined}]" PARENT_SCOPE)
endfunction()

# lib<stem>.json next to the library: what the loader and wheelmatrix read without loading it.
function(kbit_write_manifest)
  cmake_parse_arguments(M "" "FILE;LIBRARY;BACKEND;CUDA;VERSION;RUNTIME;LINK" "SASS;PTX" ${ARGN})
  _kbit_json_list(_sass ${M_SASS})
  _kbit_json_list(_ptx ${M_PTX})
  if(M_CUDA)
    set(_cuda "\"${M_CUDA}\"")
    set(_runtime "\"${M_RUNTIME}\"")
    set(_cuda_compiler "\"${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}\"")
    _kbit_json_strings(_compress ${KBIT_CUDA_COMPRESS_FLAGS})
  else()
    set(_cuda "null")
    set(_runtime "null")
    set(_cuda_compiler "null")
    set(_compress "[]")
  endif()
  if(CMAKE_BUILD_TYPE)
    set(_bt "${CMAKE_BUILD_TYPE}")
  else()
    set(_bt "")
  endif()
  set(_content "{
  \"schema\": 1,
  \"library\": \"${M_LIBRARY}\",
  \"backend\": \"${M_BACKEND}\",
  \"cuda\": ${_cuda},
  \"sass\": ${_sass},
  \"ptx\": ${_ptx},
  \"version\": \"${M_VERSION}\",
  \"runtime\": ${_runtime},
  \"flags\": {
    \"build_type\": \"${_bt}\",
    \"system\": \"${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR}\",
    \"cxx_compiler\": \"${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}\",
    \"cuda_compiler\": ${_cuda_compiler},
    \"compress\": ${_compress},
    \"link\": \"${M_LINK}\",
    \"glibc_target\": \"${KBIT_LINK_GLIBC}\"
  }
}
")
  file(CONFIGURE OUTPUT "${M_FILE}" CONTENT "${_content}" @ONLY)
endfunction()

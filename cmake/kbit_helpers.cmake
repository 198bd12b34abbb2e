# Helpers for kbit's CMakeLists.txt: CUDA arch lists and the manifest.

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

# The default archs of a CUDA version, as CMAKE_CUDA_ARCHITECTURES ("75-real;...;120-real;120-virtual").
function(kbit_default_archs version out_var)
  if(version VERSION_GREATER_EQUAL 13.0)
    set(sass 75 80 86 89 90 100 120)
  elseif(version VERSION_GREATER_EQUAL 12.8)
    set(sass 50 60 70 75 80 86 89 90 100 120)
  elseif(version VERSION_GREATER_EQUAL 11.8)
    set(sass 50 60 70 75 80 86 89 90)
  else()
    set(sass 50 60 70 75 80 86)
  endif()
  set(_archs "")
  foreach(a IN LISTS sass)
    list(APPEND _archs "${a}-real")
  endforeach()
  list(GET sass -1 _ptx)
  list(APPEND _archs "${_ptx}-virtual")
  set(${out_var} "${_archs}" PARENT_SCOPE)
endfunction()

# CMAKE_CUDA_ARCHITECTURES -> the SASS and PTX lists kbit reports ("120" alone means both).
function(kbit_split_architectures archs out_sass out_ptx)
  set(sass "")
  set(ptx "")
  foreach(a IN LISTS archs)
    if(a MATCHES "^([1-9][0-9]+)[af]?-real$")
      list(APPEND sass "${CMAKE_MATCH_1}")
    elseif(a MATCHES "^([1-9][0-9]+)[af]?-virtual$")
      list(APPEND ptx "${CMAKE_MATCH_1}")
    elseif(a MATCHES "^([1-9][0-9]+)[af]?$")
      list(APPEND sass "${CMAKE_MATCH_1}")
      list(APPEND ptx "${CMAKE_MATCH_1}")
    else()
      message(FATAL_ERROR "kbit: CUDA arch '${a}' in CMAKE_CUDA_ARCHITECTURES is not like 75, 75-real or "
                          "120-virtual")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES sass)
  list(SORT sass COMPARE NATURAL)
  list(REMOVE_DUPLICATES ptx)
  list(SORT ptx COMPARE NATURAL)
  set(${out_sass} "${sass}" PARENT_SCOPE)
  set(${out_ptx} "${ptx}" PARENT_SCOPE)
endfunction()

function(_kbit_json_list out_var)
  set(_items "")
  foreach(v IN LISTS ARGN)
    list(APPEND _items "${v}")
  endforeach()
  list(JOIN _items ", " _joined)
  set(${out_var} "[${_joined}]" PARENT_SCOPE)
endfunction()

# lib<stem>.json next to the library: what the loader and wheelmatrix read without loading it.
function(kbit_write_manifest)
  cmake_parse_arguments(M "" "FILE;LIBRARY;BACKEND;CUDA;VERSION;RUNTIME" "SASS;PTX" ${ARGN})
  _kbit_json_list(_sass ${M_SASS})
  _kbit_json_list(_ptx ${M_PTX})
  if(M_CUDA)
    set(_cuda "\"${M_CUDA}\"")
    set(_runtime "\"${M_RUNTIME}\"")
    set(_cuda_compiler "\"${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}\"")
  else()
    set(_cuda "null")
    set(_runtime "null")
    set(_cuda_compiler "null")
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
    \"cuda_compiler\": ${_cuda_compiler}
  }
}
")
  file(CONFIGURE OUTPUT "${M_FILE}" CONTENT "${_content}" @ONLY)
endfunction()

# The library as cargo leaves it in the build tree (target/release), as the
# imported target openfl_transport::openfl_transport, for the project's own
# CMake projects (tests/c, tests/cpp, examples/c). An installed copy is found
# with find_package(openfl_transport) instead (see `make install`).
#
# Needs OFL_REPO_DIR. Cache variables: OFL_LIB_DIR, OFL_INCLUDE_DIR.
# Sets OFL_LIBRARY and OFL_RPATH_DIRS (use it as BUILD_RPATH).

set(OFL_LIB_DIR "${OFL_REPO_DIR}/target/release" CACHE PATH
    "Directory holding libopenfl_transport.so (cargo build --release)")
set(OFL_INCLUDE_DIR "${OFL_REPO_DIR}/include" CACHE PATH
    "Directory holding openfl_transport.h and openfl_transport.hpp")

set(OFL_LIBRARY "${OFL_LIB_DIR}/libopenfl_transport.so")
if(NOT EXISTS "${OFL_LIBRARY}")
  message(FATAL_ERROR "${OFL_LIBRARY} not found: run `cargo build --release` first "
                      "(or pass -DOFL_LIB_DIR=<dir>)")
endif()
if(NOT EXISTS "${OFL_INCLUDE_DIR}/openfl_transport.h")
  message(FATAL_ERROR "${OFL_INCLUDE_DIR}/openfl_transport.h not found (pass -DOFL_INCLUDE_DIR=<dir>)")
endif()

# The library's SONAME is libopenfl_transport.so.<major> (.so.0.<minor> for
# 0.x), but cargo writes
# only libopenfl_transport.so (`make` adds the link; a bare `cargo build`
# does not): executables record the SONAME, so the loader needs a file of
# that name. Make one in the build tree (a symlink) and put it on the rpath.
set(OFL_RPATH_DIRS "${OFL_LIB_DIR}")
find_program(OFL_READELF NAMES readelf ${CMAKE_READELF})
if(OFL_READELF)
  execute_process(COMMAND "${OFL_READELF}" -d "${OFL_LIBRARY}"
                  OUTPUT_VARIABLE _ofl_dynamic ERROR_QUIET)
  if(_ofl_dynamic MATCHES "Library soname: \\[([^]]+)\\]")
    set(OFL_SONAME "${CMAKE_MATCH_1}")
  endif()
endif()
if(OFL_SONAME AND NOT OFL_SONAME STREQUAL "libopenfl_transport.so"
   AND NOT EXISTS "${OFL_LIB_DIR}/${OFL_SONAME}")
  set(_ofl_shim "${CMAKE_CURRENT_BINARY_DIR}/ofl-lib")
  file(MAKE_DIRECTORY "${_ofl_shim}")
  file(REMOVE "${_ofl_shim}/${OFL_SONAME}")
  file(CREATE_LINK "${OFL_LIBRARY}" "${_ofl_shim}/${OFL_SONAME}" SYMBOLIC)
  list(PREPEND OFL_RPATH_DIRS "${_ofl_shim}")
  message(STATUS "openfl_transport: SONAME ${OFL_SONAME} -> symlink in ${_ofl_shim}")
endif()

# The same target name as the installed CMake package exports.
add_library(openfl_transport::openfl_transport SHARED IMPORTED)
set_target_properties(openfl_transport::openfl_transport PROPERTIES
  IMPORTED_LOCATION "${OFL_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${OFL_INCLUDE_DIR}")

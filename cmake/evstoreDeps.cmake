# Finds the libraries evstore links, as imported targets:
#   PkgConfig::evs_lmdb, PkgConfig::evs_msgpack, PkgConfig::evs_zstd,
#   PkgConfig::evs_xxhash and Threads::Threads.
#
# Used twice: by evstore's own build, and by the installed evstoreConfig.cmake
# (a static libevstore.a carries these as link dependencies of its
# consumers). Set EVS_DEPS_REQUIRED to a true value to stop with an error
# when one is missing; otherwise evstore_deps_FOUND is set to FALSE and
# evstore_deps_MISSING lists what was not found.

set(evstore_deps_FOUND TRUE)
set(evstore_deps_MISSING "")

find_package(Threads QUIET)
if(NOT Threads_FOUND)
  set(evstore_deps_FOUND FALSE)
  list(APPEND evstore_deps_MISSING Threads)
endif()

find_package(PkgConfig QUIET)

# evs__find_pkg(<prefix> <pkg-config module> <header> <library name>)
#
# Prefers pkg-config; falls back to find_path/find_library for systems whose
# package does not ship a .pc file (older LMDB packages, for one). Either way
# the result is the imported target PkgConfig::<prefix>.
macro(evs__find_pkg _prefix _module _header _libname)
  if(NOT TARGET PkgConfig::${_prefix})
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(${_prefix} QUIET IMPORTED_TARGET ${_module})
    endif()
    if(NOT TARGET PkgConfig::${_prefix})
      find_path(${_prefix}_FALLBACK_INCLUDE_DIR ${_header})
      find_library(${_prefix}_FALLBACK_LIBRARY ${_libname})
      if(${_prefix}_FALLBACK_INCLUDE_DIR AND ${_prefix}_FALLBACK_LIBRARY)
        add_library(PkgConfig::${_prefix} INTERFACE IMPORTED)
        set_target_properties(PkgConfig::${_prefix} PROPERTIES
          INTERFACE_INCLUDE_DIRECTORIES "${${_prefix}_FALLBACK_INCLUDE_DIR}"
          INTERFACE_LINK_LIBRARIES "${${_prefix}_FALLBACK_LIBRARY}")
      endif()
    endif()
    if(NOT TARGET PkgConfig::${_prefix})
      set(evstore_deps_FOUND FALSE)
      list(APPEND evstore_deps_MISSING ${_module})
    endif()
  endif()
endmacro()

evs__find_pkg(evs_lmdb lmdb lmdb.h lmdb)
evs__find_pkg(evs_msgpack msgpack msgpack.h msgpackc)
evs__find_pkg(evs_zstd libzstd zstd.h zstd)
evs__find_pkg(evs_xxhash libxxhash xxhash.h xxhash)

if(EVS_DEPS_REQUIRED AND NOT evstore_deps_FOUND)
  message(FATAL_ERROR
    "evstore: missing dependencies: ${evstore_deps_MISSING}\n"
    "On Debian, scripts/deps.sh installs them (liblmdb-dev libmsgpack-dev "
    "libzstd-dev libxxhash-dev pkg-config).")
endif()

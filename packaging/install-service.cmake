# Runs at install time (cmake --install, cpack) for component memnode: installs
# the systemd unit with the paths of this install filled in, and the flags file
# as <etc>/default/sharry-memnode, where <etc> is /etc for the prefix /usr (the
# Debian package) and <prefix>/etc otherwise, so that
# `cmake --install --prefix DIR` stays inside DIR.
# Set by packaging.cmake before this runs: sharry_packaging_dir (the source
# folder), sharry_packaging_work (a folder in the build tree), sharry_bindir
# (CMAKE_INSTALL_BINDIR, relative or absolute).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(SHARRY_ETC_DIR /etc)
else()
  set(SHARRY_ETC_DIR "${CMAKE_INSTALL_PREFIX}/etc")
endif()
if(IS_ABSOLUTE "${sharry_bindir}")
  set(SHARRY_BIN_DIR "${sharry_bindir}")
else()
  set(SHARRY_BIN_DIR "${CMAKE_INSTALL_PREFIX}/${sharry_bindir}")
endif()
# One work folder per destination: installs may run at the same time (ctest).
string(SHA1 work "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(work "${sharry_packaging_work}/${work}")
configure_file("${sharry_packaging_dir}/sharry-memnode.service.in" "${work}/sharry-memnode.service" @ONLY)
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     FILES "${work}/sharry-memnode.service")
file(INSTALL DESTINATION "${SHARRY_ETC_DIR}/default" TYPE FILE RENAME sharry-memnode
     FILES "${sharry_packaging_dir}/sharry-memnode.default")
file(REMOVE_RECURSE "${work}")

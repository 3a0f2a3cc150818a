# Debian packages with CPack: in a build tree, `cpack -G DEB` writes
#   sharry-memnode_<version>_<arch>.deb  component memnode: the memnode daemon
#       and memnode_stats, the hardened systemd unit sharry-memnode.service
#       (sharry-memnode.service.in) and its flags file /etc/default/sharry-memnode
#   sharry-dev_<version>_<arch>.deb      component dev: the libraries, their API
#       headers and the CMake package config (find_package(Sharry))
# Every install() rule names its component; sharry_client (component tools) is
# in no package. Depends: dpkg-shlibdeps for the binaries; the -dev package
# depends on the -dev packages that SharryConfig.cmake finds.
# tests/package/check.sh --deb builds both and checks them (ctest package_deb).
# Included from the top-level CMakeLists.txt, after every install() rule.

# The unit and the flags file (install-service.cmake, at install time).
install(CODE "set(sharry_packaging_dir \"${CMAKE_CURRENT_LIST_DIR}\")
set(sharry_packaging_work \"${PROJECT_BINARY_DIR}/packaging\")
set(sharry_bindir \"${CMAKE_INSTALL_BINDIR}\")" COMPONENT memnode)
install(SCRIPT ${CMAKE_CURRENT_LIST_DIR}/install-service.cmake COMPONENT memnode)

set(CPACK_PACKAGE_NAME sharry)
set(CPACK_PACKAGE_VENDOR "Sharry")
set(CPACK_PACKAGE_CONTACT "Sharry maintainers <maintainers@users.noreply.r-seed-6d81eb7e.example>")
# CPack's own default summary: CPackDeb then takes each package's summary from
# the first line of its component description (any other value would be
# prepended to both as their summary).
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL memnode dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_COMPONENT_MEMNODE_DESCRIPTION
    "Sharry memory node: far memory shared by compute processes over RDMA or TCP
Sharry (DAC'24) lets many compute processes share the memory of one memory
node. This package holds the memnode daemon, memnode_stats, and
sharry-memnode.service: a hardened systemd unit (dynamic user, read-only
system, no capabilities, a memlock limit for the registered UMA). Flags:
/etc/default/sharry-memnode. Not started on installation: systemctl enable
--now sharry-memnode.")
set(CPACK_DEBIAN_MEMNODE_PACKAGE_NAME sharry-memnode)
set(CPACK_DEBIAN_MEMNODE_PACKAGE_SECTION net)
# The verbs transport needs a provider library (dlopen'ed: invisible to shlibdeps).
set(CPACK_DEBIAN_MEMNODE_PACKAGE_RECOMMENDS "ibverbs-providers, rdma-core")
set(CPACK_DEBIAN_MEMNODE_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_LIST_DIR}/deb/postinst ${CMAKE_CURRENT_LIST_DIR}/deb/prerm
    ${CMAKE_CURRENT_LIST_DIR}/deb/postrm ${CMAKE_CURRENT_LIST_DIR}/deb/conffiles)

set(CPACK_COMPONENT_DEV_DESCRIPTION
    "Sharry far-memory libraries, API headers and CMake config
Sharry (DAC'24) lets many compute processes share the memory of one memory
node over RDMA. This package holds the static libraries sharry::base, verbs,
memnode_client, memnode, alloc, discovery, compute and remote_ds, their API headers
(include/sharry/) and the CMake package config: find_package(Sharry), then
target_link_libraries(app PRIVATE sharry::remote_ds).")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME sharry-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libibverbs-dev, librdmacm-dev, libgflags-dev, libgoogle-glog-dev, libboost-dev (>= 1.74), libssl-dev, libmicrohttpd-dev, libisal-dev, libcurl4-openssl-dev, pkg-config")

include(CPack)

# `make package`: a Debian package of the bridge with CPack (docs/operations.md#install).
#   /usr/bin/gathering-bridge
#   /lib/systemd/system/gathering-bridge.service      runs as the system user gathering-bridge
#   /usr/lib/sysusers.d/gathering-bridge.conf         that user (postinst creates it)
#   /etc/gathering-bridge/config.json                 --config, the configuration (a conffile)
#   /usr/share/doc/gathering-bridge/                  README and docs/
# The package is built from an existing build tree: `cpack -G DEB` installs, it does not build
# (CMAKE_SKIP_INSTALL_ALL_DEPENDENCY), so a test can package the binary the tests just used.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(BRIDGE_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
install(TARGETS gathering-bridge RUNTIME DESTINATION usr/bin COMPONENT bridge)
install(FILES ${BRIDGE_PACKAGING_DIR}/gathering-bridge.service
  DESTINATION lib/systemd/system COMPONENT bridge)
install(FILES ${BRIDGE_PACKAGING_DIR}/gathering-bridge.sysusers
  DESTINATION usr/lib/sysusers.d RENAME gathering-bridge.conf COMPONENT bridge)
install(FILES ${BRIDGE_PACKAGING_DIR}/config.json
  DESTINATION etc/gathering-bridge COMPONENT bridge)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION usr/share/doc/gathering-bridge
  COMPONENT bridge)
file(GLOB BRIDGE_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${BRIDGE_DOCS} DESTINATION usr/share/doc/gathering-bridge COMPONENT bridge)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gathering-bridge)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "GatheRing")
set(CPACK_PACKAGE_CONTACT "GatheRing maintainers <maintainers@gathering.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "gRPC events in, JSON WebSocket channels out (the GatheRing real-time bridge)")
set(CPACK_PACKAGE_DESCRIPTION
  "Backends publish typed events over gRPC; browsers and other clients receive them as JSON\
 over WebSocket channels, with history, presence, tokens and limits. Runs as a systemd service\
 configured by /etc/gathering-bridge/config.json.")
# Paths above are relative to "/" (the unit goes to /lib, the configuration to /etc).
set(CPACK_PACKAGING_INSTALL_PREFIX "/")
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_BINARY_DIR};${PROJECT_NAME};bridge;/")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/gathering/gathering-bridge")
# Library dependencies from dpkg-shlibdeps (dpkg-dev); adduser for the postinst (where
# systemd-sysusers is missing, as in containers), procps for the unit's /bin/kill.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${BRIDGE_PACKAGING_DIR}/debian/conffiles ${BRIDGE_PACKAGING_DIR}/debian/postinst
  ${BRIDGE_PACKAGING_DIR}/debian/prerm ${BRIDGE_PACKAGING_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

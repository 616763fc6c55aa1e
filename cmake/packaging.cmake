# SPDX-License-Identifier: Apache-2.0
# Install rules and the Debian package (`make package`, CPack's DEB generator): the binary, the
# systemd unit, the example configuration, a man page made from --help, and a copyright file
# listing the licences of what the package ships. Depends: is computed by dpkg-shlibdeps.
include(GNUInstallDirs)

install(TARGETS omni-proxmox RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/omni-proxmox.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/debian/copyright ${CMAKE_SOURCE_DIR}/docs/operator-guide.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/deploy/compose/config.yaml.example ${CMAKE_SOURCE_DIR}/deploy/systemd/omni-proxmox.env.example
              ${CMAKE_SOURCE_DIR}/docs/examples/machineclass-worker.yaml
              ${CMAKE_SOURCE_DIR}/docs/examples/machineclass-control-plane.yaml
              ${CMAKE_SOURCE_DIR}/docs/examples/cluster-template.yaml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/deploy/grafana/ ${CMAKE_SOURCE_DIR}/deploy/prometheus/
        DESTINATION ${CMAKE_INSTALL_DATADIR}/omni-proxmox FILES_MATCHING PATTERN "*.json" PATTERN "alerts.yaml")

# The man page is the root command's --help and each subcommand's, made by help2man when it is
# installed (scripts/install-deps.sh --packaging). Searched at every configure, so installing it
# later and re-running cmake is enough.
find_program(OMNI_PROXMOX_HELP2MAN help2man NO_CACHE)
if(OMNI_PROXMOX_HELP2MAN)
  set(man_page ${CMAKE_BINARY_DIR}/man/omni-proxmox.1.gz)
  add_custom_command(
    OUTPUT ${man_page}
    COMMAND ${CMAKE_COMMAND} -DBINARY=$<TARGET_FILE:omni-proxmox> -DHELP2MAN=${OMNI_PROXMOX_HELP2MAN}
            -DOUTPUT=${man_page} -P ${CMAKE_SOURCE_DIR}/cmake/man_page.cmake
    DEPENDS omni-proxmox ${CMAKE_SOURCE_DIR}/cmake/man_page.cmake
    COMMENT "Writing the omni-proxmox(1) man page from --help"
    VERBATIM)
  add_custom_target(omni-proxmox-man ALL DEPENDS ${man_page})
  install(FILES ${man_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  add_custom_target(omni-proxmox-man COMMAND ${CMAKE_COMMAND} -E echo
                    "help2man is missing: run scripts/install-deps.sh --packaging and re-run cmake" COMMAND false)
endif()

# `cpack` installs what is built; `make package` builds only the packaged targets first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME omni-proxmox)
set(CPACK_PACKAGE_VENDOR "omni-proxmox contributors")
set(CPACK_PACKAGE_CONTACT "omni-proxmox contributors <omni-proxmox@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Sidero Omni infrastructure provider for Proxmox VE")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "Provisions Talos Linux VMs on a Proxmox VE cluster for Sidero Omni's MachineRequests: a drop-in\n"
       "replacement for the Go provider (same flags, environment, config.yaml and state), with the\n"
       "operator tools validate, plan, doctor, status and gc, and a systemd unit.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Not a library: TLS to Omni and Proxmox needs the CA bundle.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/deploy/debian/postinst ${CMAKE_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

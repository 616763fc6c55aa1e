# SPDX-License-Identifier: Apache-2.0
# Writes omni-proxmox.1.gz: help2man's page of the root --help, with every subcommand's --help
# appended as a section, so `man omni-proxmox` documents each flag the binary accepts.
# Run as cmake -DBINARY=... -DHELP2MAN=... -DOUTPUT=... -P man_page.cmake.
execute_process(COMMAND ${BINARY} --help OUTPUT_VARIABLE root_help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 AND NOT rc EQUAL 2)
  message(FATAL_ERROR "${BINARY} --help failed (${rc})")
endif()
# The subcommand names: the indented words of the "Subcommands:" list, which ends at a blank line.
string(REGEX REPLACE ".*\nSubcommands:\n" "" listing "${root_help}")
string(REGEX REPLACE "\n\n.*" "" listing "${listing}")
string(REGEX MATCHALL "\n  [a-z][a-z-]*" words "\n${listing}")
if(NOT words)
  message(FATAL_ERROR "no subcommands found in ${BINARY} --help")
endif()
get_filename_component(dir ${OUTPUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
set(include_file ${dir}/subcommands.h2m)
file(WRITE ${include_file} "[COMMANDS]\n")
foreach(word IN LISTS words)
  string(STRIP "${word}" name)
  execute_process(COMMAND ${BINARY} ${name} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${BINARY} ${name} --help failed (${rc})")
  endif()
  string(REPLACE "\\" "\\\\" help "${help}")
  # A line starting with . or ' would be a troff request.
  string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" help "${help}")
  file(APPEND ${include_file} ".SS ${name}\n.nf\n${help}\n.fi\n")
endforeach()
execute_process(
  COMMAND ${HELP2MAN} --no-info --section=1 --source=omni-proxmox
          "--name=Sidero Omni infrastructure provider for Proxmox VE" --include=${include_file}
          --output=${dir}/omni-proxmox.1 ${BINARY}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed (${rc})")
endif()
execute_process(COMMAND gzip -9 -n -f ${dir}/omni-proxmox.1 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip failed (${rc})")
endif()

# Writes INPUT (the PVE schema JSON) into OUTPUT as a C++ function returning it, split into raw
# string chunks below compilers' literal limits, so the installed binary needs no data files.
file(READ "${INPUT}" content)
string(LENGTH "${content}" total)
set(out "// Generated from ${INPUT} by embed_schema.cmake; do not edit.\n#include <string>\nnamespace omni_proxmox::sim::pve {\nstd::string EmbeddedPveSchema() {\n  std::string s;\n  s.reserve(${total});\n")
set(offset 0)
while(offset LESS total)
  string(SUBSTRING "${content}" ${offset} 30000 chunk)
  string(APPEND out "  s += R\"op_pve_schema(${chunk})op_pve_schema\";\n")
  math(EXPR offset "${offset} + 30000")
endwhile()
string(APPEND out "  return s;\n}\n}  // namespace omni_proxmox::sim::pve\n")
file(WRITE "${OUTPUT}" "${out}")

# Writes OUT, a C++ file defining gathering::bridge::v1::ConfigDescriptorSet() from the bytes of
# IN (a FileDescriptorSet with source info).
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," body "${hex}")
file(WRITE "${OUT}.tmp" "// Generated from config.proto by proto/embed_descriptor.cmake.\n#include <string_view>\nnamespace gathering::bridge::v1 {\nnamespace {\nconst char kSet[] = {${body} 0};\n}  // namespace\nstd::string_view ConfigDescriptorSet() { return std::string_view(kSet, sizeof(kSet) - 1); }\n}  // namespace gathering::bridge::v1\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)

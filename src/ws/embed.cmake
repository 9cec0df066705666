# Writes OUT, a C++ file defining bridge::ws::IndexHtml() from the bytes of IN (or a fallback).
if(EXISTS "${IN}")
  file(READ "${IN}" hex HEX)
else()
  file(READ "${FALLBACK}" hex HEX)
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," body "${hex}")
file(WRITE "${OUT}.tmp" "// Generated from clients/web/index.html by src/ws/embed.cmake.\n#include \"ws/page.h\"\nnamespace bridge::ws {\nnamespace {\nconst char kPage[] = {${body} 0};\n}  // namespace\nstd::string_view IndexHtml() { return std::string_view(kPage, sizeof(kPage) - 1); }\n}  // namespace bridge::ws\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)

# Writes OUT, a C++ file defining bridge::admin::DashboardHtml() from the bytes of IN (the
# committed dashboard bundle).
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," body "${hex}")
file(WRITE "${OUT}.tmp" "// Generated from src/admin/dashboard/dist/dashboard.html by src/admin/embed.cmake.\n#include \"admin/dashboard_page.h\"\nnamespace bridge::admin {\nnamespace {\nconst char kPage[] = {${body} 0};\n}  // namespace\nstd::string_view DashboardHtml() { return std::string_view(kPage, sizeof(kPage) - 1); }\n}  // namespace bridge::admin\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)

// The dashboard page served at /admin: src/admin/dashboard/dist/dashboard.html (built with npm
// from src/admin/dashboard/src and committed, so building the bridge needs no Node), embedded at
// build time by src/admin/embed.cmake.
#ifndef BRIDGE_ADMIN_DASHBOARD_PAGE_H_
#define BRIDGE_ADMIN_DASHBOARD_PAGE_H_

#include <string_view>

namespace bridge::admin {

std::string_view DashboardHtml();

}  // namespace bridge::admin

#endif  // BRIDGE_ADMIN_DASHBOARD_PAGE_H_

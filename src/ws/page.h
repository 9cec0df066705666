// The demo page served at "/": clients/web/index.html, embedded at build time.
#ifndef BRIDGE_WS_PAGE_H_
#define BRIDGE_WS_PAGE_H_

#include <string_view>

namespace bridge::ws {

std::string_view IndexHtml();

}  // namespace bridge::ws

#endif  // BRIDGE_WS_PAGE_H_

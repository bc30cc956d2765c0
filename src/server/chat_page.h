// The chat page served at `GET /` by `marlin serve`: one self-contained HTML document (inline CSS
// and JS, no external assets) that talks to /v1/chat/completions from the browser.
#pragma once

#include <string_view>

namespace marlin::server {

// The page's HTML (UTF-8), compiled into the binary.
std::string_view chat_page_html();

// The Content-Security-Policy sent with the page: its own inline script and style, requests to
// this server only, nothing loaded from elsewhere.
std::string_view chat_page_csp();

}  // namespace marlin::server

// SPDX-License-Identifier: Apache-2.0
#include "pve/scheme_probe.h"

#include <memory>

#include <curl/curl.h>

namespace omni_proxmox::pve {
namespace {

using Handle = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;

std::size_t Discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

Handle NewHandle(const std::string& url, std::chrono::milliseconds timeout) {
  Handle h(curl_easy_init(), &curl_easy_cleanup);
  if (h == nullptr) return h;
  curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(h.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h.get(), CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(h.get(), CURLOPT_FORBID_REUSE, 1L);
  return h;
}

}  // namespace

std::string WithOtherScheme(const std::string& base_url) {
  if (base_url.rfind("https://", 0) == 0) return "http://" + base_url.substr(8);
  if (base_url.rfind("http://", 0) == 0) return "https://" + base_url.substr(7);
  return base_url;
}

Speaks ProbeScheme(const std::string& base_url, std::chrono::milliseconds timeout) {
  const bool was_https = base_url.rfind("https://", 0) == 0;
  Handle h = NewHandle(WithOtherScheme(base_url), timeout);
  if (h == nullptr) return Speaks::kUnknown;
  if (was_https) {
    // Any status line (even 400 or 401) says the port answers plain HTTP.
    curl_easy_setopt(h.get(), CURLOPT_HTTPGET, 1L);
    const CURLcode code = curl_easy_perform(h.get());
    long status = 0;
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &status);
    return code == CURLE_OK && status > 0 ? Speaks::kPlainHttp : Speaks::kUnknown;
  }
  // Connect and handshake only; no request is sent.
  curl_easy_setopt(h.get(), CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(h.get(), CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(h.get(), CURLOPT_SSL_VERIFYHOST, 0L);
  return curl_easy_perform(h.get()) == CURLE_OK ? Speaks::kTls : Speaks::kUnknown;
}

}  // namespace omni_proxmox::pve

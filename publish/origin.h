// File: publish/origin.h
// -----------------------------------------------------------------------------
//
// URL origins (scheme, host, port) and RFC 3986 reference resolution: what the registry
// client needs to decide where its credentials may go. A registry answers with URLs of its
// own choosing (the `Location` of an upload session or a redirect, the `Link` of the next tag
// page, the `realm` of a Bearer challenge); kiln resolves each against the URL of the request
// that produced it and compares its origin with the registry's before sending anything.
//
// Example:
//
//   ASSIGN_OR_RETURN(Origin reg, OriginOf("https://Reg.example:443/v2/"));
//   ASSIGN_OR_RETURN(std::string next,
//                    ResolveReference("https://reg.example/v2/x/blobs/uploads/", "u1?s=2"));
//   // next == "https://reg.example/v2/x/blobs/uploads/u1?s=2"
//   ASSIGN_OR_RETURN(Origin o, OriginOf(next));
//   if (o != reg) ...  // refuse: another origin
//
// Specs: RFC 3986 (URI generic syntax: section 3 components, 5.2 reference resolution,
// 6.2.3 scheme-based normalization: an empty or default port equals no port), RFC 6454
// (origin = scheme, host, port).
#ifndef KILN_PUBLISH_ORIGIN_H_
#define KILN_PUBLISH_ORIGIN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::publish {

// Origin: the (scheme, host, port) triple of an http(s) URL, normalized: scheme and host
// lowercased, an IPv6 literal kept in brackets ("[::1]"), the port explicit (80 for http and
// 443 for https when the URL gives none or an empty one).
struct Origin {
  std::string scheme;  // "http" or "https"
  std::string host;    // "reg.example", "127.0.0.1", "[::1]"
  int port = 0;        // 1..65535

  // ToString(): "https://reg.example:443".
  std::string ToString() const;
  bool operator==(const Origin& o) const {
    return scheme == o.scheme && host == o.host && port == o.port;
  }
  bool operator!=(const Origin& o) const { return !(*this == o); }
};

// OriginOf(url): the origin of an absolute http or https URL. InvalidArgumentError for a
// relative reference, another scheme, a missing or malformed host, a port that is not
// 1..65535, or userinfo ("user:pass@host": refused, since it hides the real host from a
// reader and would make the transport send those credentials).
absl::StatusOr<Origin> OriginOf(absl::string_view url);

// ResolveReference(base, reference): the target URI of `reference` (absolute, or relative:
// "//host/p", "/p", "p", "?q", "#f", "") resolved against the absolute URI `base` as RFC 3986
// section 5.2 says (dot segments removed, 5.2.4). InvalidArgumentError when `base` has no
// scheme or either input contains whitespace or control characters.
absl::StatusOr<std::string> ResolveReference(absl::string_view base, absl::string_view reference);

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_ORIGIN_H_

#include "publish/origin.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kiln::publish {
namespace {

// UriParts: the five components of RFC 3986 appendix B, with "defined" flags (an empty
// query "?" differs from no query).
struct UriParts {
  bool has_scheme = false;
  std::string scheme;
  bool has_authority = false;
  std::string authority;
  std::string path;
  bool has_query = false;
  std::string query;
  bool has_fragment = false;
  std::string fragment;
};

bool ValidScheme(absl::string_view s) {
  if (s.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return false;
  return true;
}

absl::StatusOr<UriParts> Split(absl::string_view uri) {
  for (char c : uri) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return absl::InvalidArgumentError(
          absl::StrCat("URL \"", absl::CHexEscape(uri), "\" contains whitespace or a control character"));
  }
  UriParts p;
  absl::string_view rest = uri;
  size_t colon = rest.find_first_of(":/?#");
  if (colon != absl::string_view::npos && rest[colon] == ':' && colon > 0) {
    if (!ValidScheme(rest.substr(0, colon)))
      return absl::InvalidArgumentError(absl::StrCat("URL \"", uri, "\" has a malformed scheme"));
    p.has_scheme = true;
    p.scheme = absl::AsciiStrToLower(rest.substr(0, colon));
    rest.remove_prefix(colon + 1);
  }
  if (rest.size() >= 2 && rest[0] == '/' && rest[1] == '/') {
    rest.remove_prefix(2);
    size_t end = rest.find_first_of("/?#");
    p.has_authority = true;
    p.authority = std::string(rest.substr(0, end));
    rest = end == absl::string_view::npos ? absl::string_view() : rest.substr(end);
  }
  size_t end = rest.find_first_of("?#");
  p.path = std::string(rest.substr(0, end));
  rest = end == absl::string_view::npos ? absl::string_view() : rest.substr(end);
  if (!rest.empty() && rest[0] == '?') {
    size_t hash = rest.find('#');
    p.has_query = true;
    p.query = std::string(rest.substr(1, hash == absl::string_view::npos ? hash : hash - 1));
    rest = hash == absl::string_view::npos ? absl::string_view() : rest.substr(hash);
  }
  if (!rest.empty() && rest[0] == '#') {
    p.has_fragment = true;
    p.fragment = std::string(rest.substr(1));
  }
  return p;
}

// RemoveDotSegments: RFC 3986 section 5.2.4, step by step.
std::string RemoveDotSegments(absl::string_view in) {
  std::string out;
  auto drop_last = [&out] {
    size_t slash = out.rfind('/');
    out.resize(slash == std::string::npos ? 0 : slash);
  };
  std::string input(in);
  absl::string_view s = input;
  while (!s.empty()) {
    if (s.substr(0, 3) == "../") {
      s.remove_prefix(3);
    } else if (s.substr(0, 2) == "./") {
      s.remove_prefix(2);
    } else if (s.substr(0, 3) == "/./") {
      s.remove_prefix(2);
    } else if (s == "/.") {
      input = "/";
      s = input;
    } else if (s.substr(0, 4) == "/../") {
      s.remove_prefix(3);
      drop_last();
    } else if (s == "/..") {
      input = "/";
      s = input;
      drop_last();
    } else if (s == "." || s == "..") {
      s = absl::string_view();
    } else {
      size_t next = s.find('/', 1);
      absl::StrAppend(&out, s.substr(0, next));
      s = next == absl::string_view::npos ? absl::string_view() : s.substr(next);
    }
  }
  return out;
}

std::string Recompose(const UriParts& t) {
  std::string out;
  if (t.has_scheme) absl::StrAppend(&out, t.scheme, ":");
  if (t.has_authority) absl::StrAppend(&out, "//", t.authority);
  out += t.path;
  if (t.has_query) absl::StrAppend(&out, "?", t.query);
  if (t.has_fragment) absl::StrAppend(&out, "#", t.fragment);
  return out;
}

bool HostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         c == '_' || c == '~' || c == '%';
}

}  // namespace

std::string Origin::ToString() const { return absl::StrCat(scheme, "://", host, ":", port); }

absl::StatusOr<Origin> OriginOf(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("URL \"", absl::CHexEscape(url), "\": ", why));
  };
  absl::StatusOr<UriParts> p = Split(url);
  if (!p.ok()) return p.status();
  if (!p->has_scheme) return bad("not an absolute URL (no scheme)");
  if (p->scheme != "http" && p->scheme != "https") return bad("scheme is not http or https");
  if (!p->has_authority || p->authority.empty()) return bad("no host");
  absl::string_view auth = p->authority;
  if (auth.find('@') != absl::string_view::npos) return bad("userinfo (user@host) is not allowed");
  Origin o;
  o.scheme = p->scheme;
  absl::string_view port;
  bool has_port = false;
  if (auth[0] == '[') {
    size_t close = auth.find(']');
    if (close == absl::string_view::npos) return bad("unterminated IPv6 literal");
    absl::string_view inner = auth.substr(1, close - 1);
    if (inner.empty()) return bad("empty IPv6 literal");
    for (char c : inner)
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.' &&
          c != '%' && !absl::ascii_isalnum(static_cast<unsigned char>(c)))
        return bad("malformed IPv6 literal");
    o.host = absl::AsciiStrToLower(auth.substr(0, close + 1));
    absl::string_view after = auth.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after the IPv6 literal");
      has_port = true;
      port = after.substr(1);
    }
  } else {
    size_t c = auth.find(':');
    absl::string_view host = auth.substr(0, c);
    if (c != absl::string_view::npos) {
      has_port = true;
      port = auth.substr(c + 1);
    }
    if (host.empty()) return bad("no host");
    for (char ch : host)
      if (!HostChar(ch)) return bad("bad character in host");
    o.host = absl::AsciiStrToLower(host);
  }
  o.port = o.scheme == "https" ? 443 : 80;
  if (has_port && !port.empty()) {  // RFC 3986 6.2.3: an empty port is the default port
    for (char ch : port)
      if (!absl::ascii_isdigit(static_cast<unsigned char>(ch))) return bad("port is not a number");
    int n = 0;
    if (port.size() > 5 || !absl::SimpleAtoi(port, &n) || n < 1 || n > 65535)
      return bad("port out of range 1..65535");
    o.port = n;
  }
  return o;
}

absl::StatusOr<std::string> ResolveReference(absl::string_view base, absl::string_view reference) {
  absl::StatusOr<UriParts> b = Split(base);
  if (!b.ok()) return b.status();
  if (!b->has_scheme)
    return absl::InvalidArgumentError(absl::StrCat("base URL \"", base, "\" is not absolute"));
  absl::StatusOr<UriParts> r = Split(reference);
  if (!r.ok()) return r.status();
  UriParts t;
  if (r->has_scheme) {
    t = *r;
    t.path = RemoveDotSegments(r->path);
  } else {
    if (r->has_authority) {
      t.has_authority = true;
      t.authority = r->authority;
      t.path = RemoveDotSegments(r->path);
      t.has_query = r->has_query;
      t.query = r->query;
    } else {
      if (r->path.empty()) {
        t.path = b->path;
        t.has_query = r->has_query ? true : b->has_query;
        t.query = r->has_query ? r->query : b->query;
      } else {
        if (r->path[0] == '/') {
          t.path = RemoveDotSegments(r->path);
        } else {  // 5.2.3 merge
          std::string merged;
          if (b->has_authority && b->path.empty()) {
            merged = "/" + r->path;
          } else {
            size_t slash = b->path.rfind('/');
            merged = slash == std::string::npos ? r->path
                                                : b->path.substr(0, slash + 1) + r->path;
          }
          t.path = RemoveDotSegments(merged);
        }
        t.has_query = r->has_query;
        t.query = r->query;
      }
      t.has_authority = b->has_authority;
      t.authority = b->authority;
    }
    t.has_scheme = true;
    t.scheme = b->scheme;
  }
  t.has_fragment = r->has_fragment;
  t.fragment = r->fragment;
  return Recompose(t);
}

}  // namespace kiln::publish

#include "publish/registry.h"

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::publish {
namespace {

using json = nlohmann::json;

std::string UrlEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::AsciiStrToUpper(absl::StrCat(absl::Hex(c, absl::kZeroPad2))));
    }
  }
  return out;
}

bool Retryable(int status) { return status >= 500 || status == 429; }

const char* kManifestAccept =
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

// ParseRangeEnd("0-1234") -> 1235 (bytes received); -1 when malformed.
int64_t BytesFromRange(absl::string_view range) {
  range = absl::StripPrefix(range, "bytes=");
  std::vector<absl::string_view> parts = absl::StrSplit(range, '-');
  int64_t end = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &end)) return -1;
  return end + 1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<RegistryRef> RegistryRef::Parse(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid --registry \"", text, "\": ", why, " (expected HOST[:PORT]/REPO, e.g. ",
        "127.0.0.1:5000/kiln/builder)"));
  };
  if (absl::StrContains(text, "://")) return bad("no scheme: use --plain-http or --tls");
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos || slash == 0 || slash + 1 == text.size())
    return bad("missing repository");
  RegistryRef r{std::string(text.substr(0, slash)), std::string(text.substr(slash + 1))};
  for (char c : r.repository) {
    if (c == ':' || c == '@') return bad("the repository must not carry a tag or digest");
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' ||
          c == '-' || c == '/'))
      return bad("repository must be lowercase [a-z0-9._-/]");
  }
  if (absl::StrContains(r.repository, "//") || r.repository.back() == '/')
    return bad("empty repository path component");
  for (char c : r.host)
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return bad("bad character in host");
  return r;
}

absl::Status ValidateTag(absl::string_view tag) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", tag, "\" is not a valid tag: ", why,
        " (OCI distribution-spec tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})"));
  };
  if (tag.empty()) return bad("empty");
  if (tag.size() > kMaxTagLength)
    return bad(absl::StrCat(tag.size(), " characters, at most ", kMaxTagLength));
  for (size_t i = 0; i < tag.size(); ++i) {
    const char c = tag[i];
    const bool word = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
    if (word || (i > 0 && (c == '.' || c == '-'))) continue;
    return bad(absl::StrCat(i == 0 ? "first " : "", "character \"",
                            absl::CHexEscape(absl::string_view(&c, 1)),
                            "\" at position ", i, " is not allowed"));
  }
  return absl::OkStatus();
}

bool RegistryRef::IsLoopback() const {
  absl::string_view h = host;
  if (absl::StartsWith(h, "[")) return absl::StartsWith(h, "[::1]");
  h = h.substr(0, h.find(':'));
  if (absl::AsciiStrToLower(h) == "localhost") return true;
  std::vector<absl::string_view> o = absl::StrSplit(h, '.');
  if (o.size() != 4 || o[0] != "127") return false;
  for (absl::string_view p : o) {
    int v;
    if (!absl::SimpleAtoi(p, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

absl::StatusOr<std::optional<Credentials>> CredentialsFromDockerConfig(
    absl::string_view config_json, absl::string_view host) {
  json j = json::parse(config_json.begin(), config_json.end(), nullptr, false);
  if (!j.is_object()) return absl::InvalidArgumentError("docker config.json: not a JSON object");
  if (!j.contains("auths") || !j["auths"].is_object()) return std::nullopt;
  for (const std::string& key : {std::string(host), absl::StrCat("https://", host),
                                 absl::StrCat("http://", host)}) {
    if (!j["auths"].contains(key)) continue;
    const json& e = j["auths"][key];
    if (!e.is_object()) continue;
    if (e.contains("auth") && e["auth"].is_string() && !e["auth"].get<std::string>().empty()) {
      std::string decoded;
      if (!absl::Base64Unescape(e["auth"].get<std::string>(), &decoded))
        return absl::InvalidArgumentError(
            absl::StrCat("docker config.json: auths[\"", key, "\"].auth is not base64"));
      size_t colon = decoded.find(':');
      if (colon == std::string::npos)
        return absl::InvalidArgumentError(
            absl::StrCat("docker config.json: auths[\"", key, "\"].auth is not user:password"));
      return Credentials{decoded.substr(0, colon), decoded.substr(colon + 1)};
    }
    if (e.contains("username") && e.contains("password"))
      return Credentials{e.value("username", ""), e.value("password", "")};
  }
  return std::nullopt;
}

Challenge ParseChallenge(absl::string_view header) {
  Challenge c;
  header = absl::StripLeadingAsciiWhitespace(header);
  size_t sp = header.find(' ');
  c.scheme = absl::AsciiStrToLower(header.substr(0, sp));
  if (sp == absl::string_view::npos) return c;
  absl::string_view rest = header.substr(sp + 1);
  while (!rest.empty()) {
    rest = absl::StripLeadingAsciiWhitespace(rest);
    size_t eq = rest.find('=');
    if (eq == absl::string_view::npos) break;
    std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(rest.substr(0, eq)));
    rest = rest.substr(eq + 1);
    std::string value;
    if (!rest.empty() && rest[0] == '"') {
      size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        value.push_back(rest[i]);
      }
      rest = rest.substr(std::min(rest.size(), i + 1));
    } else {
      size_t comma = rest.find(',');
      value = std::string(absl::StripAsciiWhitespace(rest.substr(0, comma)));
      rest = comma == absl::string_view::npos ? "" : rest.substr(comma);
    }
    c.params[key] = value;
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (!rest.empty() && rest[0] == ',') rest = rest.substr(1);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------

RegistryClient::RegistryClient(RegistryRef ref, RegistryOptions opts, HttpTransport* http)
    : ref_(std::move(ref)), opts_(std::move(opts)), http_(http), origin_(OriginOf(BaseUrl())) {
  if (!opts_.sleep) opts_.sleep = [](absl::Duration d) { absl::SleepFor(d); };
  if (opts_.max_attempts < 1) opts_.max_attempts = 1;
  if (opts_.chunk_bytes < 1) opts_.chunk_bytes = 16 << 20;
}

std::string RegistryClient::BaseUrl() const {
  return absl::StrCat(opts_.use_tls ? "https://" : "http://", ref_.host);
}

absl::StatusOr<std::string> RegistryClient::FollowUrl(const HttpRequest& req,
                                                      absl::string_view header,
                                                      absl::string_view value) const {
  if (!origin_.ok()) return origin_.status();
  auto refuse = [&](absl::string_view why) {
    return absl::InternalError(absl::StrCat(
        "registry answered ", req.method, " ", req.url, " with ", header, " \"",
        absl::CHexEscape(value), "\": ", why, "; refusing to follow it (kiln sends requests and ",
        "credentials only to the registry's origin ", origin_->ToString(), ")"));
  };
  absl::StatusOr<std::string> url = ResolveReference(req.url, value);
  if (!url.ok()) return refuse(url.status().message());
  absl::StatusOr<Origin> o = OriginOf(*url);
  if (!o.ok()) return refuse(o.status().message());
  if (o->scheme == "http" && origin_->scheme == "https")
    return refuse(absl::StrCat("it downgrades https to plain http (", o->ToString(), ")"));
  if (*o != *origin_) return refuse(absl::StrCat("another origin (", o->ToString(), ")"));
  return *url;
}

void RegistryClient::Sleep(int attempt, const HttpResponse* resp) {
  absl::Duration d = opts_.backoff_base * (1 << std::min(attempt - 1, 10));
  if (resp != nullptr) {
    int64_t secs = 0;
    if (absl::SimpleAtoi(resp->Header("retry-after"), &secs) && secs > 0)
      d = std::max(d, absl::Seconds(secs));
  }
  opts_.sleep(std::min(d, absl::Seconds(5)));
}

absl::Status RegistryClient::HttpError(const HttpRequest& req, const HttpResponse& resp) const {
  std::string detail;
  json j = json::parse(resp.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    std::vector<std::string> parts;
    for (const json& e : j["errors"])
      if (e.is_object())
        parts.push_back(absl::StrCat(e.value("code", "?"), ": ", e.value("message", "")));
    detail = absl::StrJoin(parts, "; ");
  }
  std::string msg = absl::StrCat(req.method, " ", req.url, " -> HTTP ", resp.status,
                                 detail.empty() ? "" : absl::StrCat(" (", detail, ")"));
  if (resp.status >= 300 && resp.status < 400) {
    std::string loc = resp.Header("location");
    if (loc.empty()) return absl::InternalError(absl::StrCat(msg, ": a redirect without Location"));
    absl::StatusOr<std::string> same = FollowUrl(req, "Location", loc);
    if (!same.ok()) return same.status();
    return absl::InternalError(absl::StrCat(msg, " to ", *same,
                                            ": the registry redirected, kiln does not follow "
                                            "redirects"));
  }
  if (resp.status == 401) return absl::UnauthenticatedError(msg);
  if (resp.status == 403) return absl::PermissionDeniedError(msg);
  if (Retryable(resp.status))
    return absl::UnavailableError(absl::StrCat(msg, " after ", opts_.max_attempts, " attempts"));
  if (resp.status >= 400) return absl::AbortedError(msg);
  return absl::InternalError(absl::StrCat(msg, ": unexpected status"));
}

absl::Status RegistryClient::Authenticate(const HttpResponse& resp) {
  std::string header = resp.Header("www-authenticate");
  Challenge ch = ParseChallenge(header);
  const std::string who = opts_.credentials ? absl::StrCat("user \"", opts_.credentials->username,
                                                           "\"")
                                            : "";
  if (ch.scheme == "basic") {
    if (!opts_.credentials)
      return absl::UnauthenticatedError(absl::StrCat(
          "registry ", ref_.host, " requires authentication: pass --username (password on "
          "stdin) or add it to Docker's config.json"));
    std::string basic = absl::StrCat(
        "Basic ", absl::Base64Escape(absl::StrCat(opts_.credentials->username, ":",
                                                  opts_.credentials->password)));
    if (auth_header_ == basic)
      return absl::UnauthenticatedError(
          absl::StrCat("registry ", ref_.host, " rejected the credentials of ", who));
    auth_header_ = basic;
    return absl::OkStatus();
  }
  if (ch.scheme == "bearer") {
    auto realm = ch.params.find("realm");
    if (realm == ch.params.end())
      return absl::InternalError(absl::StrCat("Bearer challenge without realm: ", header));
    // The credentials go only to the realm the registry named, and never in clear when the
    // registry itself is on TLS.
    absl::StatusOr<Origin> realm_origin = OriginOf(realm->second);
    if (!realm_origin.ok())
      return absl::UnauthenticatedError(absl::StrCat(
          "registry ", ref_.host, " named a token realm kiln will not use: ",
          realm_origin.status().message()));
    if (opts_.use_tls && realm_origin->scheme != "https")
      return absl::UnauthenticatedError(absl::StrCat(
          "registry ", ref_.host, " (https) named the plain-http token realm ", realm->second,
          ": refusing to send credentials or take a token over plain HTTP"));
    std::vector<std::string> scopes;
    if (ch.params.count("scope")) scopes.push_back(ch.params["scope"]);
    std::string mine = absl::StrCat("repository:", ref_.repository, ":pull,push");
    if (std::find(scopes.begin(), scopes.end(), mine) == scopes.end()) scopes.push_back(mine);
    for (const std::string& s : extra_scopes_)
      if (std::find(scopes.begin(), scopes.end(), s) == scopes.end()) scopes.push_back(s);
    HttpRequest treq;
    treq.method = "GET";
    treq.url = realm->second;
    treq.max_response_bytes = kMaxTokenResponseBytes;
    std::vector<std::string> q;
    if (ch.params.count("service")) q.push_back("service=" + UrlEncode(ch.params["service"]));
    for (const std::string& s : scopes) q.push_back("scope=" + UrlEncode(s));
    if (!q.empty())
      absl::StrAppend(&treq.url, absl::StrContains(treq.url, "?") ? "&" : "?",
                      absl::StrJoin(q, "&"));
    if (opts_.credentials)
      treq.headers.push_back(
          {"Authorization",
           absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(
                                      opts_.credentials->username, ":",
                                      opts_.credentials->password)))});
    absl::StatusOr<HttpResponse> tr;
    for (int attempt = 1;; ++attempt) {
      tr = http_->Do(treq);
      bool again = (!tr.ok() && absl::IsUnavailable(tr.status())) ||
                   (tr.ok() && Retryable(tr->status));
      if (!again || attempt >= opts_.max_attempts) break;
      ++stats_.retries;
      Sleep(attempt, tr.ok() ? &*tr : nullptr);
    }
    if (!tr.ok()) return tr.status();
    if (tr->status >= 300 && tr->status < 400)
      return absl::UnauthenticatedError(absl::StrCat(
          "token endpoint ", realm->second, " redirected (HTTP ", tr->status,
          "); kiln does not follow redirects with credentials"));
    if (tr->status == 401 || tr->status == 403)
      return absl::UnauthenticatedError(absl::StrCat(
          "token endpoint ", realm->second, " refused ",
          opts_.credentials ? absl::StrCat("the credentials of ", who) : "anonymous access",
          " (HTTP ", tr->status, ")"));
    if (tr->status != 200) return HttpError(treq, *tr);
    json j = json::parse(tr->body, nullptr, false);
    std::string token;
    if (j.is_object()) token = j.value("token", j.value("access_token", ""));
    if (token.empty())
      return absl::InternalError(absl::StrCat("token endpoint ", realm->second,
                                              " returned no token"));
    std::string bearer = absl::StrCat("Bearer ", token);
    if (auth_header_ == bearer)
      return absl::UnauthenticatedError(
          absl::StrCat("registry ", ref_.host, " rejected the token for ", mine));
    auth_header_ = bearer;
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(absl::StrCat("registry ", ref_.host,
                                                 " sent an unsupported challenge: ",
                                                 header.empty() ? "(none)" : header));
}

absl::StatusOr<HttpResponse> RegistryClient::SendOnce(HttpRequest& req) {
  // Every URL is built from BaseUrl() or passed FollowUrl(); check again before anything
  // (least of all credentials) leaves.
  if (!origin_.ok()) return origin_.status();
  absl::StatusOr<Origin> to = OriginOf(req.url);
  if (!to.ok() || *to != *origin_)
    return absl::InternalError(absl::StrCat("refusing to send ", req.method, " ", req.url,
                                            ": not the registry's origin ", origin_->ToString()));
  for (int round = 0; round < 2; ++round) {
    HttpRequest r = req;
    if (!auth_header_.empty()) r.headers.push_back({"Authorization", auth_header_});
    ASSIGN_OR_RETURN(HttpResponse resp, http_->Do(r));
    if (resp.status != 401 || round == 1) return resp;
    RETURN_IF_ERROR(Authenticate(resp));
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<HttpResponse> RegistryClient::Send(HttpRequest req, bool retry) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpResponse> r = SendOnce(req);
    const bool can_retry = retry && attempt < opts_.max_attempts;
    if (!r.ok()) {
      if (absl::IsUnavailable(r.status()) && can_retry) {
        ++stats_.retries;
        Sleep(attempt, nullptr);
        continue;
      }
      if (absl::IsUnavailable(r.status()) && retry)
        return absl::UnavailableError(
            absl::StrCat(r.status().message(), " (after ", attempt, " attempts)"));
      return r.status();
    }
    if (Retryable(r->status) && can_retry) {
      ++stats_.retries;
      Sleep(attempt, &*r);
      continue;
    }
    return r;
  }
}

absl::Status RegistryClient::Ping() {
  HttpRequest req{.method = "GET", .url = BaseUrl() + "/v2/"};
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status == 200) return absl::OkStatus();
  if (resp.status == 401)
    return absl::UnauthenticatedError(absl::StrCat("registry ", ref_.host,
                                                   " rejected the credentials"));
  return HttpError(req, resp);
}

absl::StatusOr<bool> RegistryClient::HasBlob(absl::string_view digest) {
  HttpRequest req{.method = "HEAD",
                  .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository, "/blobs/", digest)};
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  return HttpError(req, resp);
}

absl::StatusOr<bool> RegistryClient::MountBlob(absl::string_view digest, absl::string_view from,
                                               std::string* upload_url) {
  std::string scope = absl::StrCat("repository:", from, ":pull");
  if (std::find(extra_scopes_.begin(), extra_scopes_.end(), scope) == extra_scopes_.end()) {
    extra_scopes_.push_back(scope);
    if (absl::StartsWith(auth_header_, "Bearer ")) auth_header_.clear();  // re-challenge
  }
  HttpRequest req{.method = "POST",
                  .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository,
                                      "/blobs/uploads/?mount=", UrlEncode(digest),
                                      "&from=", UrlEncode(from))};
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status == 201) {
    ++stats_.mounts;
    return true;
  }
  if (resp.status == 202 && !resp.Header("location").empty()) {
    ASSIGN_OR_RETURN(*upload_url, FollowUrl(req, "Location", resp.Header("location")));
    return false;
  }
  return HttpError(req, resp);
}

absl::Status RegistryClient::UploadBlob(const Descriptor& desc, const std::string& path,
                                        std::string upload_url,
                                        std::function<void(int64_t)> on_progress) {
  auto start = [&]() -> absl::Status {
    HttpRequest req{.method = "POST",
                    .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository, "/blobs/uploads/")};
    ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
    if (resp.status != 202 || resp.Header("location").empty()) return HttpError(req, resp);
    ASSIGN_OR_RETURN(upload_url, FollowUrl(req, "Location", resp.Header("location")));
    return absl::OkStatus();
  };
  if (upload_url.empty()) RETURN_IF_ERROR(start());

  int64_t offset = 0;
  int failures = 0;
  absl::Status last;
  while (offset < desc.size) {
    const int64_t len = std::min(opts_.chunk_bytes, desc.size - offset);
    HttpRequest patch{.method = "PATCH", .url = upload_url};
    patch.headers = {{"Content-Type", "application/octet-stream"},
                     {"Content-Range", absl::StrCat(offset, "-", offset + len - 1)}};
    patch.body_file = path;
    patch.body_offset = offset;
    patch.body_length = len;
    const int64_t base = offset;
    if (on_progress) patch.on_progress = [&](int64_t sent) { on_progress(base + sent); };
    absl::StatusOr<HttpResponse> r = Send(patch, /*retry=*/false);
    if (r.ok() && r->status == 202) {
      offset += len;
      stats_.bytes_sent += len;
      if (!r->Header("location").empty()) {
        ASSIGN_OR_RETURN(upload_url, FollowUrl(patch, "Location", r->Header("location")));
      }
      continue;
    }
    // Only a lost connection or a stall is worth asking the registry where the upload is.
    if (!r.ok() && !absl::IsUnavailable(r.status()) && !absl::IsDeadlineExceeded(r.status()))
      return r.status();
    // The chunk failed. Only network failures, 5xx/429 and 416 (offset mismatch) recover.
    if (r.ok() && !Retryable(r->status) && r->status != 416) return HttpError(patch, *r);
    last = r.ok() ? HttpError(patch, *r) : r.status();
    if (++failures >= opts_.max_attempts)
      return absl::UnavailableError(absl::StrCat("upload of ", desc.digest, " failed after ",
                                                 failures, " attempts: ", last.message()));
    ++stats_.retries;
    Sleep(failures, r.ok() ? &*r : nullptr);
    bool restart = r.ok() && r->status == 416;
    if (!restart) {
      // Ask the registry how much it holds (distribution-spec "Get Upload Status").
      HttpRequest status{.method = "GET", .url = upload_url};
      absl::StatusOr<HttpResponse> s = Send(status);
      if (s.ok() && s->status == 204 && BytesFromRange(s->Header("range")) >= 0) {
        int64_t have = BytesFromRange(s->Header("range"));
        // "0-0" means 0 or 1 bytes in distribution; a wrong guess is answered by 416.
        if (s->Header("range") == "0-0") have = 0;
        offset = std::min(have, desc.size);
        if (!s->Header("location").empty()) {
          ASSIGN_OR_RETURN(upload_url, FollowUrl(status, "Location", s->Header("location")));
        }
        ++stats_.resumes;
        continue;
      }
      if (!s.ok() && !absl::IsUnavailable(s.status())) return s.status();
      restart = true;  // session unknown (404) or still unreachable: start over
    }
    ++stats_.restarts;
    offset = 0;
    absl::Status st = start();
    if (!st.ok()) return st;
  }
  HttpRequest put{.method = "PUT",
                  .url = absl::StrCat(upload_url, absl::StrContains(upload_url, "?") ? "&" : "?",
                                      "digest=", UrlEncode(desc.digest))};
  put.headers = {{"Content-Type", "application/octet-stream"}};
  absl::StatusOr<HttpResponse> r = Send(put);
  if (r.ok() && r->status == 201) {
    std::string got = r->Header("docker-content-digest");
    if (!got.empty() && got != desc.digest)
      return absl::InternalError(absl::StrCat("registry stored ", got, " for ", desc.digest));
    return absl::OkStatus();
  }
  // The PUT may have landed although its response was lost: trust a HEAD.
  absl::StatusOr<bool> have = HasBlob(desc.digest);
  if (have.ok() && *have) return absl::OkStatus();
  if (!r.ok()) return r.status();
  return HttpError(put, *r);
}

absl::StatusOr<std::optional<std::string>> RegistryClient::ResolveTag(
    absl::string_view reference) {
  HttpRequest req{.method = "HEAD", .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository,
                                                        "/manifests/", reference)};
  req.headers = {{"Accept", kManifestAccept}};
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status == 404) return std::optional<std::string>();
  if (resp.status != 200) return HttpError(req, resp);
  std::string digest = resp.Header("docker-content-digest");
  if (digest.empty()) {
    ASSIGN_OR_RETURN(std::string bytes, GetManifest(reference));
    digest = Sha256Digest(bytes);
  }
  return std::optional<std::string>(digest);
}

absl::StatusOr<std::vector<std::string>> RegistryClient::ListTags() {
  std::vector<std::string> tags;
  std::string url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository, "/tags/list?n=1000");
  for (int page = 0; page < 1000 && !url.empty(); ++page) {
    HttpRequest req{.method = "GET", .url = url};
    req.max_response_bytes = kMaxTagListBytes;
    ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
    if (resp.status == 404) return tags;  // NAME_UNKNOWN: a new repository
    if (resp.status != 200) return HttpError(req, resp);
    json j = json::parse(resp.body, nullptr, false);
    if (!j.is_object())
      return absl::InternalError(absl::StrCat("GET ", url, ": tag list is not JSON"));
    if (j.contains("tags") && j["tags"].is_array())
      for (const json& t : j["tags"])
        if (t.is_string()) tags.push_back(t.get<std::string>());
    url.clear();
    std::string link = resp.Header("link");  // <url>; rel="next"
    if (absl::StrContains(link, "rel=\"next\"") && link.find('<') != std::string::npos) {
      size_t a = link.find('<'), b = link.find('>');
      if (b != std::string::npos && b > a) {
        ASSIGN_OR_RETURN(url, FollowUrl(req, "Link", link.substr(a + 1, b - a - 1)));
      }
    }
  }
  return tags;
}

absl::Status RegistryClient::PutManifest(absl::string_view reference, absl::string_view bytes,
                                         absl::string_view media_type) {
  if (!absl::StartsWith(reference, oci::kSha256Prefix)) RETURN_IF_ERROR(ValidateTag(reference));
  HttpRequest req{.method = "PUT", .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository,
                                                       "/manifests/", reference)};
  req.headers = {{"Content-Type", std::string(media_type)}};
  req.body = std::string(bytes);
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status != 201) return HttpError(req, resp);
  std::string got = resp.Header("docker-content-digest");
  if (!got.empty() && got != Sha256Digest(bytes))
    return absl::InternalError(absl::StrCat("registry stored manifest ", got, ", expected ",
                                            Sha256Digest(bytes)));
  return absl::OkStatus();
}

absl::StatusOr<std::string> RegistryClient::GetManifest(absl::string_view reference) {
  HttpRequest req{.method = "GET", .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository,
                                                       "/manifests/", reference)};
  req.headers = {{"Accept", kManifestAccept}};
  req.max_response_bytes = kMaxManifestBytes;
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status != 200) return HttpError(req, resp);
  return resp.body;
}

absl::StatusOr<std::string> RegistryClient::GetBlob(const Descriptor& desc) {
  RETURN_IF_ERROR(ValidateDigest(desc.digest));
  if (desc.size < 0 || desc.size > kMaxPullBlobBytes) {
    return absl::InvalidArgumentError(absl::StrCat("blob ", desc.digest, " is ", desc.size,
                                                   " bytes; kiln pulls blobs of at most ",
                                                   kMaxPullBlobBytes));
  }
  HttpRequest req{.method = "GET", .url = absl::StrCat(BaseUrl(), "/v2/", ref_.repository,
                                                       "/blobs/", desc.digest)};
  req.max_response_bytes = desc.size;
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status != 200) return HttpError(req, resp);
  const std::string got = Sha256Digest(resp.body);
  if (static_cast<int64_t>(resp.body.size()) != desc.size || got != desc.digest) {
    return absl::DataLossError(absl::StrCat("GET ", req.url, ": the registry served ",
                                            resp.body.size(), " bytes hashing to ", got,
                                            ", not the blob ", desc.digest, " (", desc.size,
                                            " bytes): refused"));
  }
  return std::move(resp.body);
}

}  // namespace kiln::publish

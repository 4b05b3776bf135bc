// File: publish/registry.h
// -----------------------------------------------------------------------------
//
// RegistryClient: the OCI distribution-spec v1 push side
// (https://github.com/opencontainers/distribution-spec/blob/v1.0.1/spec.md) over an
// HttpTransport: blob HEAD, cross-repository mount, chunked upload (POST, PATCH with
// Content-Range, PUT ?digest=) with resume, manifest PUT/HEAD/GET and tag listing. Handles the
// `WWW-Authenticate` challenge (Basic, and Bearer via the token endpoint) and retries with
// exponential backoff on 5xx, 429 and connection failures.
//
// Example:
//
//   ASSIGN_OR_RETURN(RegistryRef ref, RegistryRef::Parse("127.0.0.1:5000/kiln/builder"));
//   CurlTransport http({});
//   RegistryClient reg(ref, {.use_tls = false}, &http);
//   RETURN_IF_ERROR(reg.Ping());
//   ASSIGN_OR_RETURN(bool have, reg.HasBlob(layer.digest));
//   if (!have) RETURN_IF_ERROR(reg.UploadBlob(layer, "/layout/blobs/sha256/<hex>", {}));
//   RETURN_IF_ERROR(reg.PutManifest(digest, manifest_bytes, oci::kMediaTypeImageManifest));
//   RETURN_IF_ERROR(reg.PutManifest("1.2.3", manifest_bytes, oci::kMediaTypeImageManifest));
//
// Where credentials go: every request goes to the registry's own origin (the scheme of
// RegistryOptions::use_tls, the host and the port of the RegistryRef, RFC 6454), and only
// those requests carry `Authorization` (Basic, or the Bearer token). A `Location` (upload
// session, redirect) or `Link` (next tag page) is resolved against the URL of the request
// that returned it (RFC 3986 section 5.2) and refused, before anything is sent, when it
// names another origin, downgrades https to http, or carries userinfo. Redirects (3xx) are
// never followed. The Basic credentials for the Bearer token go only to the `realm` URL of
// the registry's `WWW-Authenticate` challenge, and never over plain HTTP when the registry
// is spoken to over TLS.
//
// Response bodies read into memory are capped (kMaxManifestBytes, kMaxTagListBytes,
// kMaxTokenResponseBytes, and http.h's kDefaultMaxResponseBytes for everything else: JSON
// errors, upload replies); the transport bounds stalls (http.h TransportOptions).
//
// Errors (absl::StatusCode): Unauthenticated (no or rejected credentials, or a token realm
// kiln refuses to send them to), PermissionDenied (403), Unavailable (network failure or
// 5xx/429 after all retries), DeadlineExceeded (the registry stalled: not retried),
// ResourceExhausted (a response larger than its cap), Internal (the registry answered
// something the spec does not allow, e.g. a wrong Docker-Content-Digest, or a Location/Link
// to another origin, or a redirect), Aborted (the registry refused the request with another
// 4xx; the message carries its error code, e.g. MANIFEST_BLOB_UNKNOWN).
#ifndef KILN_PUBLISH_REGISTRY_H_
#define KILN_PUBLISH_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "publish/http.h"
#include "publish/oci.h"
#include "publish/origin.h"

namespace kiln::publish {

// Caps on the response bodies RegistryClient reads into memory (bytes). One byte more fails
// the request with ResourceExhausted.
// kMaxManifestBytes: a manifest (GET): 4 MiB, the distribution spec's figure (a registry
// that limits manifest size should accept at least 4 MiB).
inline constexpr int64_t kMaxManifestBytes = int64_t{4} << 20;
// kMaxTagListBytes: one page of GET /v2/<repo>/tags/list (kiln asks for n=1000): 4 MiB.
inline constexpr int64_t kMaxTagListBytes = int64_t{4} << 20;
// kMaxPullBlobBytes: the largest blob GetBlob reads (it holds the blob in memory): 2 GiB.
inline constexpr int64_t kMaxPullBlobBytes = int64_t{2} << 30;
// kMaxTokenResponseBytes: the token endpoint's JSON reply: 1 MiB.
inline constexpr int64_t kMaxTokenResponseBytes = int64_t{1} << 20;

// RegistryRef: "HOST[:PORT]/REPO" (REPO may contain slashes; lowercase [a-z0-9._-/]).
struct RegistryRef {
  std::string host;        // "127.0.0.1:5000", "registry.example.com"
  std::string repository;  // "kiln/builder"

  // RegistryRef::Parse(text): InvalidArgumentError for a missing repository, a scheme prefix
  // ("http://..."), a tag/digest suffix, or characters the distribution spec does not allow.
  static absl::StatusOr<RegistryRef> Parse(absl::string_view text);
  std::string ToString() const { return host + "/" + repository; }
  // IsLoopback(): host is localhost, 127.0.0.0/8 or [::1] (any port).
  bool IsLoopback() const;
};

// kMaxTagLength: the longest tag the distribution spec allows (characters).
inline constexpr size_t kMaxTagLength = 128;

// ValidateTag(tag): OkStatus when `tag` matches the OCI distribution-spec tag grammar
// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`; else InvalidArgumentError quoting the tag and naming
// the first offending character and its position (0-based), or the length. Registries answer
// a manifest PUT to a tag outside the grammar with an error such as HTTP 404, so kiln checks
// before sending anything.
absl::Status ValidateTag(absl::string_view tag);

// Credentials: a username and password (or identity token as the password).
struct Credentials {
  std::string username;
  std::string password;
};

// CredentialsFromDockerConfig(config_json, host): the `auths` entry of Docker's config.json
// for `host` (also matched as "https://host" and "http://host"), decoded from its base64
// "auth" field or its "username"/"password" fields. nullopt when there is no entry;
// InvalidArgumentError for malformed JSON or base64.
absl::StatusOr<std::optional<Credentials>> CredentialsFromDockerConfig(absl::string_view config_json,
                                                                       absl::string_view host);

// ParseChallenge(header): the scheme ("basic"/"bearer", lowercased) and parameters of a
// WWW-Authenticate header (RFC 7235), e.g. Bearer realm="...",service="...",scope="...".
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};
Challenge ParseChallenge(absl::string_view header);

// RegistryOptions: how to talk to the registry.
struct RegistryOptions {
  bool use_tls = true;                      // https:// (else plain http://)
  std::optional<Credentials> credentials;   // used for Basic and for the token endpoint
  int max_attempts = 5;                     // per request, for retryable failures
  absl::Duration backoff_base = absl::Milliseconds(200);  // doubles per attempt, max 5 s
  int64_t chunk_bytes = 16 << 20;           // PATCH chunk size (bytes)
  // sleep(d): how to wait between attempts (tests pass a no-op).
  std::function<void(absl::Duration)> sleep;
};

// UploadStats: byte counters (bytes) over the client's lifetime.
struct UploadStats {
  int64_t bytes_sent = 0;     // blob bytes sent in PATCH bodies (including re-sent bytes)
  int64_t retries = 0;        // requests retried after a retryable failure
  int64_t resumes = 0;        // uploads resumed from the registry's reported offset
  int64_t restarts = 0;       // uploads restarted from byte 0 (session lost)
  int64_t mounts = 0;         // blobs mounted from another repository
};

// RegistryClient: one repository on one registry. Not thread-safe.
class RegistryClient {
 public:
  RegistryClient(RegistryRef ref, RegistryOptions opts, HttpTransport* http);

  // Ping(): GET /v2/ (authenticating if challenged). Ok when the registry speaks the API and
  // the credentials (if any are needed) are accepted.
  absl::Status Ping();

  // HasBlob(digest): HEAD /v2/<repo>/blobs/<digest>: true on 200, false on 404.
  absl::StatusOr<bool> HasBlob(absl::string_view digest);

  // MountBlob(digest, from): POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>.
  // true when mounted (201). false when the registry declined and opened an upload session
  // instead (202): its URL is stored in *upload_url for UploadBlob.
  absl::StatusOr<bool> MountBlob(absl::string_view digest, absl::string_view from,
                                 std::string* upload_url);

  // UploadBlob(desc, path, upload_url, on_progress): chunked upload of file `path` (which
  // must hold desc.size bytes with digest desc.digest): POST (unless `upload_url` is given),
  // PATCH chunks of opts.chunk_bytes with Content-Range, PUT ?digest=. After a failed PATCH
  // it asks the registry for the upload's offset (GET upload URL, `Range` header) and
  // resumes there; if the session is gone it restarts. on_progress(bytes_done) may be empty.
  absl::Status UploadBlob(const Descriptor& desc, const std::string& path,
                          std::string upload_url, std::function<void(int64_t)> on_progress);

  // ResolveTag(reference): HEAD /v2/<repo>/manifests/<reference>: its Docker-Content-Digest,
  // or nullopt on 404.
  absl::StatusOr<std::optional<std::string>> ResolveTag(absl::string_view reference);

  // ListTags(): GET /v2/<repo>/tags/list (following Link pagination); empty for a
  // repository the registry does not know (404).
  absl::StatusOr<std::vector<std::string>> ListTags();

  // PutManifest(reference, bytes, media_type): PUT /v2/<repo>/manifests/<reference>; checks
  // the returned Docker-Content-Digest equals Sha256Digest(bytes) (Internal otherwise).
  // A reference that is neither a sha256 digest nor a valid tag (ValidateTag) is
  // InvalidArgument, with nothing sent.
  absl::Status PutManifest(absl::string_view reference, absl::string_view bytes,
                           absl::string_view media_type);

  // GetManifest(reference): GET with Accept for OCI and Docker v2 manifests; the exact bytes.
  absl::StatusOr<std::string> GetManifest(absl::string_view reference);

  // GetBlob(desc): GET /v2/<repo>/blobs/<digest>: the blob's bytes, read into memory up to
  // desc.size (one byte more is ResourceExhausted; desc.size above kMaxPullBlobBytes is
  // InvalidArgument before anything is sent). DataLoss when the bytes do not hash to
  // desc.digest or are fewer than desc.size: a tampered blob is refused by its digest.
  absl::StatusOr<std::string> GetBlob(const Descriptor& desc);

  const UploadStats& stats() const { return stats_; }
  std::string BaseUrl() const;

 private:
  // Send: one request with auth (answering one 401 challenge) and retries.
  absl::StatusOr<HttpResponse> Send(HttpRequest req, bool retry = true);
  absl::StatusOr<HttpResponse> SendOnce(HttpRequest& req);
  absl::Status Authenticate(const HttpResponse& challenge_resp);
  // FollowUrl(req, header, value): `value` (a Location or Link target of the response to
  // `req`) resolved against req.url; Internal error when it leaves the registry's origin.
  absl::StatusOr<std::string> FollowUrl(const HttpRequest& req, absl::string_view header,
                                        absl::string_view value) const;
  absl::Status HttpError(const HttpRequest& req, const HttpResponse& resp) const;
  void Sleep(int attempt, const HttpResponse* resp);

  RegistryRef ref_;
  RegistryOptions opts_;
  HttpTransport* http_;
  absl::StatusOr<Origin> origin_;  // of BaseUrl()
  std::string auth_header_;  // "Basic ..." / "Bearer ..." once authenticated
  std::vector<std::string> extra_scopes_;
  UploadStats stats_;
};

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_REGISTRY_H_

// File: harness/vmm/cloud_hypervisor_fake_api.h
// -----------------------------------------------------------------------------
//
// Test support (testonly): FakeHttpServer, a tiny HTTP/1.1 server on a unix socket that stands
// in for Cloud Hypervisor's API in harness tests. It serves one request per connection
// (request line, headers, Content-Length body), records every request, and answers what a
// handler returns: any status and body, after a delay, or no reply at all (the connection is
// closed). Used in-process by cloud_hypervisor_test.cc and by the fake `cloud-hypervisor`
// executable (testdata/ch_fake_cloud_hypervisor.cc).
//
// Example:
//
//   ASSIGN_OR_RETURN(auto server, FakeHttpServer::Start("/tmp/x/api.sock",
//       [](const FakeHttpRequest& r) { return FakeHttpResponse{.status = 204}; }));
//   ... ChApiClient("/tmp/x/api.sock", absl::Seconds(1)).Call("PUT", "vm.boot") ...
//   server->requests();   // [{PUT, /api/v1/vm.boot, ""}]
#ifndef KILN_HARNESS_CLOUD_HYPERVISOR_FAKE_API_H_
#define KILN_HARNESS_CLOUD_HYPERVISOR_FAKE_API_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln::harness {

// FakeHttpRequest: one request as received.
struct FakeHttpRequest {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // "/api/v1/vm.create"
  std::string body;
};

// FakeHttpResponse: what to answer.
struct FakeHttpResponse {
  int status = 204;
  std::string body;
  // delay: wait this long before answering (a slow VMM).
  absl::Duration delay = absl::ZeroDuration();
  // close_without_reply: close the connection instead of answering (a crashing VMM).
  bool close_without_reply = false;
  // after_reply: runs after the reply was sent (e.g. the fake VMM exits on vmm.shutdown).
  std::function<void()> after_reply;
};

using FakeHttpHandler = std::function<FakeHttpResponse(const FakeHttpRequest&)>;

// FakeHttpServer: serves on a background thread until destroyed.
class FakeHttpServer {
 public:
  // Start(socket_path, handler): binds (removing a stale file) and serves. Errors: the
  // PosixError of socket/bind/listen; InvalidArgument for a path over 107 bytes.
  static absl::StatusOr<std::unique_ptr<FakeHttpServer>> Start(std::string socket_path,
                                                               FakeHttpHandler handler);
  // ~FakeHttpServer: stops serving, joins the thread, removes the socket file.
  ~FakeHttpServer();

  // requests(): every request received so far, in order.
  std::vector<FakeHttpRequest> requests() const;

 private:
  FakeHttpServer(int fd, std::string path, FakeHttpHandler handler);
  void Serve();
  void HandleConnection(int fd);

  int fd_;
  std::string path_;
  FakeHttpHandler handler_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::vector<FakeHttpRequest> requests_;
  std::thread thread_;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CLOUD_HYPERVISOR_FAKE_API_H_

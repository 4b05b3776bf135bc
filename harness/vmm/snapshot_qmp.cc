// File: harness/vmm/snapshot_qmp.cc
#include "harness/vmm/snapshot_qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "harness/vmm/qemu.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using nlohmann::json;

int RemainingMs(absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
}

absl::StatusOr<int> ConnectOnce(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError(errno, "socket", path);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    close(fd);
    return PosixError(e, "connect", path);
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<QmpClient>> QmpClient::Connect(
    const std::string& path, absl::Duration timeout, const std::function<bool()>& gone) {
  if (path.empty() || path.size() > 107) {
    return absl::InvalidArgumentError(absl::StrCat("QMP socket path must be 1..107 bytes: ", path));
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (true) {
    absl::StatusOr<int> fd = ConnectOnce(path);
    if (fd.ok()) {
      std::unique_ptr<QmpClient> c(new QmpClient(*fd));
      ASSIGN_OR_RETURN(c->greeting_, c->ReadObject(deadline));
      if (!c->greeting_.contains("QMP")) {
        return absl::DataLossError(absl::StrCat("QMP ", path, ": no greeting: ",
                                                c->greeting_.dump()));
      }
      RETURN_IF_ERROR(
          c->Execute("qmp_capabilities", json::object(), deadline - absl::Now()).status());
      return c;
    }
    last = fd.status();
    if (gone && gone()) {
      return absl::UnavailableError(absl::StrCat("QMP socket ", path, ": QEMU exited"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("QMP socket ", path, " not connected within ",
                                                      absl::FormatDuration(timeout), ": ",
                                                      last.message()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

QmpClient::~QmpClient() { close(fd_); }

absl::StatusOr<json> QmpClient::ReadObject(absl::Time deadline) {
  while (true) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        return absl::DataLossError(absl::StrCat("QMP: not a JSON object: ", line.substr(0, 200)));
      }
      return j;
    }
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, RemainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return PosixError(errno, "poll", "QMP socket");
    if (r == 0) return absl::DeadlineExceededError("QMP: no reply in time");
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError(errno, "read", "QMP socket");
    if (n == 0) return absl::UnavailableError("QMP: QEMU closed the socket");
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<json> QmpClient::Execute(absl::string_view command, const json& arguments,
                                        absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  json request = {{"execute", std::string(command)}};
  if (!arguments.empty()) request["arguments"] = arguments;
  const std::string line = request.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EPIPE || errno == ECONNRESET) {
        return absl::UnavailableError("QMP: QEMU closed the socket");
      }
      return PosixError(errno, "send", "QMP socket");
    }
    off += static_cast<size_t>(n);
  }
  while (true) {
    ASSIGN_OR_RETURN(json reply, ReadObject(deadline));
    if (reply.contains("event")) continue;
    if (reply.contains("error")) {
      const json& e = reply["error"];
      return absl::FailedPreconditionError(absl::StrCat(
          command, ": ", e.value("class", std::string("?")), ": ", e.value("desc", std::string())));
    }
    if (reply.contains("return")) return reply["return"];
  }
}

MigrationFeatures MigrationFeaturesFrom(const json& greeting, const json& capabilities) {
  MigrationFeatures f;
  if (greeting.contains("QMP") && greeting["QMP"].contains("version") &&
      greeting["QMP"]["version"].contains("qemu")) {
    const json& v = greeting["QMP"]["version"]["qemu"];
    f.major = v.value("major", 0);
    f.minor = v.value("minor", 0);
    f.micro = v.value("micro", 0);
  }
  f.file_uri = f.major > 8 || (f.major == 8 && f.minor >= 2);
  if (capabilities.is_array()) {
    for (const json& c : capabilities) {
      if (!c.is_object()) continue;
      const std::string name = c.value("capability", std::string());
      if (name == "mapped-ram") f.mapped_ram = true;
      if (name == kIgnoreSharedCapability) f.ignore_shared = true;
    }
  }
  return f;
}

std::string ChooseSaveUri(const MigrationFeatures& features, absl::string_view state_path) {
  if (features.file_uri) return absl::StrCat("file:", state_path);
  return absl::StrCat("exec:cat > ", ShellQuote(state_path));
}

json SetCapabilityArgs(absl::string_view name, bool state) {
  return {{"capabilities", json::array({{{"capability", std::string(name)}, {"state", state}}})}};
}

json MigrateIncomingArgs(const VmConfig& config) {
  return {{"uri", QemuIncomingUri(config.restore_from)}};
}

absl::StatusOr<SaveStats> SaveQemuSnapshot(const std::string& control_socket,
                                           const std::string& state_path,
                                           absl::Duration timeout, SnapshotRam ram) {
  const absl::Time t0 = absl::Now();
  const absl::Time deadline = t0 + timeout;
  auto left = [&] { return std::max(deadline - absl::Now(), absl::Milliseconds(1)); };
  ASSIGN_OR_RETURN(std::unique_ptr<QmpClient> qmp, QmpClient::Connect(control_socket, left()));
  SaveStats stats;
  ASSIGN_OR_RETURN(json caps, qmp->Execute("query-migrate-capabilities", json::object(), left()));
  stats.features = MigrationFeaturesFrom(qmp->greeting(), caps);
  stats.uri = ChooseSaveUri(stats.features, state_path);
  stats.ram = ram;
  if (ram == SnapshotRam::kFile && !stats.features.ignore_shared) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot RAM mode file needs the migration capability ", kIgnoreSharedCapability,
        ", which QEMU ", stats.features.major, ".", stats.features.minor, " does not list"));
  }
  RETURN_IF_ERROR(qmp->Execute("stop", json::object(), left()).status());
  if (ram == SnapshotRam::kFile) {
    // The guest RAM is the shared memory-backend-file: the stream skips it.
    RETURN_IF_ERROR(qmp->Execute("migrate-set-capabilities",
                                 SetCapabilityArgs(kIgnoreSharedCapability, true), left())
                        .status());
  }
  // The default max-bandwidth (128 MiB/s) would make a 200 MB save take ~2 s.
  RETURN_IF_ERROR(qmp->Execute("migrate-set-parameters",
                               {{"max-bandwidth", int64_t{20} << 30}}, left())
                      .status());
  const absl::Time m0 = absl::Now();
  RETURN_IF_ERROR(qmp->Execute("migrate", {{"uri", stats.uri}}, left()).status());
  while (true) {
    ASSIGN_OR_RETURN(json st, qmp->Execute("query-migrate", json::object(), left()));
    const std::string status = st.value("status", std::string());
    if (status == "completed") {
      if (st.contains("ram") && st["ram"].is_object()) {
        stats.ram_stream_bytes = st["ram"].value("transferred", uint64_t{0});
      }
      break;
    }
    if (status == "failed" || status == "cancelled") {
      return absl::InternalError(absl::StrCat("migration to ", state_path, " ", status, ": ",
                                              st.value("error-desc", std::string("(no detail)"))));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "migration to ", state_path, " not completed within ", absl::FormatDuration(timeout),
          " (status ", status, ")"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  stats.migrate = absl::Now() - m0;
  // quit: QEMU answers, then closes the socket; either is fine.
  absl::StatusOr<json> q = qmp->Execute("quit", json::object(), left());
  if (!q.ok() && !absl::IsUnavailable(q.status())) return q.status();
  struct stat st;
  if (stat(state_path.c_str(), &st) != 0) return PosixError(errno, "stat", state_path);
  stats.state_bytes = static_cast<uint64_t>(st.st_size);
  stats.total = absl::Now() - t0;
  return stats;
}

namespace {

// Resume(control_socket, deferred, timeout, gone): ResumeQemuVm; `deferred` (may be null): the
// config of a VM started with -incoming defer, whose migration is started here first.
absl::StatusOr<absl::Duration> Resume(const std::string& control_socket,
                                      const VmConfig* deferred, absl::Duration timeout,
                                      const std::function<bool()>& gone) {
  const absl::Time t0 = absl::Now();
  const absl::Time deadline = t0 + timeout;
  auto left = [&] { return std::max(deadline - absl::Now(), absl::Milliseconds(1)); };
  absl::StatusOr<std::unique_ptr<QmpClient>> connected =
      QmpClient::Connect(control_socket, left(), gone);
  if (absl::IsUnavailable(connected.status())) {
    return absl::InternalError("incoming migration failed: QEMU exited (see its log)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<QmpClient> qmp, std::move(connected));
  if (deferred != nullptr) {
    for (const auto& [command, args] :
         {std::pair<const char*, json>{"migrate-set-capabilities",
                                       SetCapabilityArgs(kIgnoreSharedCapability, true)},
          std::pair<const char*, json>{"migrate-incoming", MigrateIncomingArgs(*deferred)}}) {
      absl::StatusOr<json> r = qmp->Execute(command, args, left());
      if (absl::IsUnavailable(r.status())) {
        return absl::InternalError("incoming migration failed: QEMU exited (see its log)");
      }
      if (!r.ok()) {
        return absl::InternalError(
            absl::StrCat("incoming migration failed: ", r.status().message()));
      }
    }
  }
  while (true) {
    absl::StatusOr<json> st = qmp->Execute("query-status", json::object(), left());
    if (absl::IsUnavailable(st.status())) {
      return absl::InternalError("incoming migration failed: QEMU exited (see its log)");
    }
    if (!st.ok()) return st.status();
    const std::string status = st->value("status", std::string());
    if (status == "paused" || status == "running") break;
    if (status != "inmigrate" && status != "prelaunch") {
      return absl::InternalError(absl::StrCat("incoming migration failed: VM status ", status));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "incoming migration not done within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  RETURN_IF_ERROR(qmp->Execute("cont", json::object(), left()).status());
  return absl::Now() - t0;
}

}  // namespace

absl::StatusOr<absl::Duration> ResumeQemuVm(const std::string& control_socket,
                                            absl::Duration timeout,
                                            const std::function<bool()>& gone) {
  return Resume(control_socket, nullptr, timeout, gone);
}

absl::StatusOr<absl::Duration> ResumeQemuVm(const VmConfig& restored, absl::Duration timeout,
                                            const std::function<bool()>& gone) {
  return Resume(restored.control_socket_path,
                QemuIncomingDeferred(restored) ? &restored : nullptr, timeout, gone);
}

}  // namespace kiln::harness

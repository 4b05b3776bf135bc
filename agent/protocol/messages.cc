#include "agent/protocol/messages.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/protocol/internal/wire.h"
#include "agent/protocol/secure_wipe.h"
#include "agent/protocol/text.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::agent {
namespace {

using internal::WireReader;
using internal::WireWriter;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckLen(absl::string_view field, absl::string_view s, size_t max) {
  if (s.size() > max) {
    return Invalid(field, absl::StrCat("length ", s.size(), " exceeds limit ", max));
  }
  return absl::OkStatus();
}

absl::Status CheckBoundedText(absl::string_view field, absl::string_view s, size_t max) {
  RETURN_IF_ERROR(CheckLen(field, s, max));
  return CheckText(field, s);
}

absl::Status CheckNoNul(absl::string_view field, absl::string_view s, size_t max) {
  RETURN_IF_ERROR(CheckLen(field, s, max));
  if (size_t p = s.find('\0'); p != absl::string_view::npos) {
    return Invalid(field, absl::StrCat("NUL byte at offset ", p));
  }
  return absl::OkStatus();
}

// A lower-case name: [a-z0-9_.-]{1,64} (capabilities, phases).
absl::Status CheckName(absl::string_view field, absl::string_view s) {
  if (s.empty() || s.size() > 64) return Invalid(field, "must be 1..64 bytes");
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return Invalid(field, absl::StrCat("\"", SanitizeUtf8(s), "\" is not [a-z0-9_.-]{1,64}"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHostStream(absl::string_view field, uint32_t id, bool optional) {
  if (id == 0 && optional) return absl::OkStatus();
  if (!IsHostStream(id)) return Invalid(field, absl::StrCat("host stream ids are odd, got ", id));
  return absl::OkStatus();
}

absl::Status CheckAgentStream(absl::string_view field, uint32_t id, bool optional) {
  if (id == 0 && optional) return absl::OkStatus();
  if (!IsAgentStream(id)) {
    return Invalid(field, absl::StrCat("agent stream ids are even and != 0, got ", id));
  }
  return absl::OkStatus();
}

std::string Idx(absl::string_view field, size_t i) { return absl::StrCat(field, "[", i, "]"); }

// ---- Validate --------------------------------------------------------------------------

absl::Status ValidateOne(const Hello& m) {
  return CheckBoundedText("Hello.host_version", m.host_version, kMaxVersionString);
}

absl::Status ValidateOne(const Ready& m) {
  RETURN_IF_ERROR(CheckBoundedText("Ready.agent_version", m.agent_version, kMaxVersionString));
  if (m.capabilities.size() > kMaxCapabilities) {
    return Invalid("Ready.capabilities", "too many entries");
  }
  for (size_t i = 0; i < m.capabilities.size(); ++i) {
    RETURN_IF_ERROR(CheckName(Idx("Ready.capabilities", i), m.capabilities[i]));
  }
  return absl::OkStatus();
}

absl::Status ValidateOne(const Ping&) { return absl::OkStatus(); }
absl::Status ValidateOne(const Pong&) { return absl::OkStatus(); }

absl::Status ValidateOne(const ErrorMessage& m) {
  const int code = static_cast<int>(m.code);
  if (code < 1 || code > 16) {
    return Invalid("Error.code", absl::StrCat("must be a canonical code 1..16, got ", code));
  }
  return CheckBoundedText("Error.message", m.message, kMaxErrorMessage);
}

absl::Status ValidateOne(const Secret& m) {
  RETURN_IF_ERROR(CheckIdentifier("Secret.id", m.id));
  return CheckLen("Secret.value", m.value, kMaxSecretValue);
}

absl::Status CheckDockerfilePath(absl::string_view p) {
  constexpr absl::string_view f = "BuildJob.dockerfile_path";
  RETURN_IF_ERROR(CheckBoundedText(f, p, kMaxPath));
  if (p.empty()) return Invalid(f, "empty");
  if (p[0] == '/') return Invalid(f, "must be relative to the context");
  for (absl::string_view part : absl::StrSplit(p, '/')) {
    if (part == "..") return Invalid(f, "must not contain \"..\"");
  }
  return absl::OkStatus();
}

absl::Status CheckBuildArgKey(absl::string_view field, absl::string_view k) {
  if (k.empty() || k.size() > 256) return Invalid(field, "must be 1..256 bytes");
  for (size_t i = 0; i < k.size(); ++i) {
    const char c = k[i];
    const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
    if (!(alpha || (i > 0 && c >= '0' && c <= '9'))) {
      return Invalid(field, absl::StrCat("\"", SanitizeUtf8(k),
                                         "\" is not [A-Za-z_][A-Za-z0-9_]*"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOne(const BuildJob& m) {
  RETURN_IF_ERROR(CheckIdentifier("BuildJob.job_id", m.job_id));
  RETURN_IF_ERROR(CheckHostStream("BuildJob.context_stream", m.context_stream, false));
  RETURN_IF_ERROR(CheckDockerfilePath(m.dockerfile_path));
  RETURN_IF_ERROR(CheckLen("BuildJob.dockerfile", m.dockerfile, kMaxDockerfile));
  if (m.build_args.size() > kMaxBuildArgs) return Invalid("BuildJob.build_args", "too many");
  std::set<std::string> keys;
  for (size_t i = 0; i < m.build_args.size(); ++i) {
    const std::string f = Idx("BuildJob.build_args", i);
    RETURN_IF_ERROR(CheckBuildArgKey(f + ".key", m.build_args[i].key));
    RETURN_IF_ERROR(CheckBoundedText(f + ".value", m.build_args[i].value, kMaxBuildArgValue));
    if (!keys.insert(m.build_args[i].key).second) {
      return Invalid(f, absl::StrCat("duplicate key \"", m.build_args[i].key, "\""));
    }
  }
  RETURN_IF_ERROR(CheckBoundedText("BuildJob.target", m.target, kMaxShortText));
  if (static_cast<uint8_t>(m.network) > 2) {
    return Invalid("BuildJob.network",
                   absl::StrCat("unknown mode ", static_cast<int>(m.network)));
  }
  if (m.secret_ids.size() > kMaxSecretsPerJob) return Invalid("BuildJob.secret_ids", "too many");
  std::set<std::string> ids;
  for (size_t i = 0; i < m.secret_ids.size(); ++i) {
    RETURN_IF_ERROR(CheckIdentifier(Idx("BuildJob.secret_ids", i), m.secret_ids[i]));
    if (!ids.insert(m.secret_ids[i]).second) {
      return Invalid(Idx("BuildJob.secret_ids", i),
                     absl::StrCat("duplicate id \"", m.secret_ids[i], "\""));
    }
  }
  if (m.preload_images.size() > kMaxPreloadImages) {
    return Invalid("BuildJob.preload_images", "too many");
  }
  std::set<uint32_t> streams = {m.context_stream};
  for (size_t i = 0; i < m.preload_images.size(); ++i) {
    const std::string f = Idx("BuildJob.preload_images", i);
    const PreloadImage& p = m.preload_images[i];
    RETURN_IF_ERROR(CheckBoundedText(f + ".ref", p.ref, kMaxShortText));
    if (p.ref.empty()) return Invalid(f + ".ref", "empty");
    RETURN_IF_ERROR(CheckHostStream(f + ".stream_id", p.stream_id, false));
    if (!streams.insert(p.stream_id).second) {
      return Invalid(f + ".stream_id", absl::StrCat("stream ", p.stream_id, " used twice"));
    }
  }
  return CheckBoundedText("BuildJob.tag", m.tag, kMaxShortText);
}

absl::Status ValidateOne(const WarmUp& m) {
  if (m.preload_images.size() > kMaxPreloadImages) {
    return Invalid("WarmUp.preload_images", "too many");
  }
  std::set<uint32_t> streams;
  for (size_t i = 0; i < m.preload_images.size(); ++i) {
    const std::string f = Idx("WarmUp.preload_images", i);
    const PreloadImage& p = m.preload_images[i];
    RETURN_IF_ERROR(CheckBoundedText(f + ".ref", p.ref, kMaxShortText));
    if (p.ref.empty()) return Invalid(f + ".ref", "empty");
    RETURN_IF_ERROR(CheckHostStream(f + ".stream_id", p.stream_id, false));
    if (!streams.insert(p.stream_id).second) {
      return Invalid(f + ".stream_id", absl::StrCat("stream ", p.stream_id, " used twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOne(const Log& m) {
  const auto s = static_cast<uint8_t>(m.stream);
  if (s < 1 || s > 3) return Invalid("Log.stream", absl::StrCat("unknown stream ", s));
  return CheckBoundedText("Log.text", m.text, kMaxLogLine);
}

absl::Status CheckDigest(absl::string_view d) {
  if (d.empty()) return absl::OkStatus();
  constexpr absl::string_view kPrefix = "sha256:";
  bool ok = d.size() == kPrefix.size() + 64 && d.substr(0, kPrefix.size()) == kPrefix;
  for (size_t i = kPrefix.size(); ok && i < d.size(); ++i) {
    ok = (d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f');
  }
  if (!ok) {
    return Invalid("BuildResult.image_digest",
                   absl::StrCat("\"", SanitizeUtf8(d.substr(0, 80)),
                                "\" is not sha256:<64 lowercase hex>"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOne(const BuildResult& m) {
  RETURN_IF_ERROR(CheckIdentifier("BuildResult.job_id", m.job_id));
  RETURN_IF_ERROR(CheckDigest(m.image_digest));
  RETURN_IF_ERROR(CheckAgentStream("BuildResult.image_stream", m.image_stream, true));
  if (m.phases.size() > kMaxPhases) return Invalid("BuildResult.phases", "too many");
  for (size_t i = 0; i < m.phases.size(); ++i) {
    RETURN_IF_ERROR(CheckName(Idx("BuildResult.phases", i) + ".name", m.phases[i].name));
  }
  return CheckBoundedText("BuildResult.error", m.error, kMaxErrorMessage);
}

absl::Status ValidateOne(const Exec& m) {
  if (m.argv.empty()) return Invalid("Exec.argv", "needs at least one entry");
  if (m.argv.size() > kMaxArgv) return Invalid("Exec.argv", "too many entries");
  if (m.argv[0].empty()) return Invalid("Exec.argv[0]", "empty program");
  for (size_t i = 0; i < m.argv.size(); ++i) {
    RETURN_IF_ERROR(CheckNoNul(Idx("Exec.argv", i), m.argv[i], kMaxArg));
  }
  if (m.env.size() > kMaxArgv) return Invalid("Exec.env", "too many entries");
  for (size_t i = 0; i < m.env.size(); ++i) {
    RETURN_IF_ERROR(CheckNoNul(Idx("Exec.env", i), m.env[i], kMaxArg));
    const size_t eq = m.env[i].find('=');
    if (eq == std::string::npos || eq == 0) {
      return Invalid(Idx("Exec.env", i), "must be KEY=VALUE with a non-empty KEY");
    }
  }
  RETURN_IF_ERROR(CheckNoNul("Exec.cwd", m.cwd, kMaxPath));
  return CheckHostStream("Exec.stdin_stream", m.stdin_stream, true);
}

absl::Status ValidateOne(const ExecStarted& m) {
  RETURN_IF_ERROR(CheckAgentStream("ExecStarted.stdout_stream", m.stdout_stream, false));
  RETURN_IF_ERROR(CheckAgentStream("ExecStarted.stderr_stream", m.stderr_stream, false));
  if (m.stdout_stream == m.stderr_stream) {
    return Invalid("ExecStarted.stderr_stream", "must differ from stdout_stream");
  }
  return absl::OkStatus();
}

absl::Status ValidateOne(const ExecResult& m) {
  if (m.signal < 0 || m.signal > 64) {
    return Invalid("ExecResult.signal", absl::StrCat("out of range: ", m.signal));
  }
  if (m.signal == 0 && (m.exit_code < 0 || m.exit_code > 255)) {
    return Invalid("ExecResult.exit_code", absl::StrCat("must be 0..255, got ", m.exit_code));
  }
  return CheckBoundedText("ExecResult.error", m.error, kMaxErrorMessage);
}

absl::Status ValidateOne(const StreamEnd& m) {
  if (m.stream_id == 0) return Invalid("StreamEnd.stream_id", "must be != 0");
  if (!m.aborted && !m.error.empty()) {
    return Invalid("StreamEnd.error", "must be empty unless aborted");
  }
  return CheckBoundedText("StreamEnd.error", m.error, kMaxErrorMessage);
}

// ---- Encode ----------------------------------------------------------------------------

void Put(WireWriter& w, const std::vector<std::string>& v) {
  w.Count(v.size());
  for (const auto& s : v) w.Bytes(s);
}

void Put(WireWriter& w, const Hello& m) {
  w.U16(m.protocol_major);
  w.U16(m.protocol_minor);
  w.Bytes(m.host_version);
}
void Put(WireWriter& w, const Ready& m) {
  w.U16(m.protocol_major);
  w.U16(m.protocol_minor);
  w.Bytes(m.agent_version);
  Put(w, m.capabilities);
}
void Put(WireWriter& w, const Ping& m) { w.U64(m.nonce); }
void Put(WireWriter& w, const Pong& m) {
  w.U64(m.nonce);
  w.U64(m.uptime_ms);
  w.U32(m.load1_milli);
  w.U32(m.load5_milli);
  w.U32(m.load15_milli);
  w.U64(m.mem_total_bytes);
  w.U64(m.mem_available_bytes);
}
void Put(WireWriter& w, const ErrorMessage& m) {
  w.U16(static_cast<uint16_t>(m.code));
  w.Bytes(m.message);
}
void Put(WireWriter& w, const Secret& m) {
  w.Bytes(m.id);
  w.Bytes(m.value);
}
void Put(WireWriter& w, const BuildJob& m) {
  w.Bytes(m.job_id);
  w.U32(m.context_stream);
  w.Bytes(m.dockerfile_path);
  w.Bytes(m.dockerfile);
  w.Count(m.build_args.size());
  for (const auto& a : m.build_args) {
    w.Bytes(a.key);
    w.Bytes(a.value);
  }
  w.Bytes(m.target);
  w.U8(static_cast<uint8_t>(m.network));
  Put(w, m.secret_ids);
  w.Count(m.preload_images.size());
  for (const auto& p : m.preload_images) {
    w.Bytes(p.ref);
    w.U32(p.stream_id);
  }
  w.Bytes(m.tag);
  w.U64(m.deadline_ms);
}
void Put(WireWriter& w, const WarmUp& m) {
  w.Count(m.preload_images.size());
  for (const auto& p : m.preload_images) {
    w.Bytes(p.ref);
    w.U32(p.stream_id);
  }
  w.U64(m.deadline_ms);
}
void Put(WireWriter& w, const Log& m) {
  w.U8(static_cast<uint8_t>(m.stream));
  w.U64(m.time_ms);
  w.Bytes(m.text);
}
void Put(WireWriter& w, const BuildResult& m) {
  w.Bytes(m.job_id);
  w.I32(m.exit_status);
  w.Bytes(m.image_digest);
  w.U32(m.image_stream);
  w.Count(m.phases.size());
  for (const auto& p : m.phases) {
    w.Bytes(p.name);
    w.U64(p.duration_ms);
  }
  w.Bytes(m.error);
}
void Put(WireWriter& w, const Exec& m) {
  Put(w, m.argv);
  Put(w, m.env);
  w.Bytes(m.cwd);
  w.U32(m.stdin_stream);
  w.U64(m.deadline_ms);
}
void Put(WireWriter& w, const ExecStarted& m) {
  w.U32(m.pid);
  w.U32(m.stdout_stream);
  w.U32(m.stderr_stream);
}
void Put(WireWriter& w, const ExecResult& m) {
  w.I32(m.exit_code);
  w.I32(m.signal);
  w.U64(m.duration_ms);
  w.Bytes(m.error);
}
void Put(WireWriter& w, const StreamEnd& m) {
  w.U64(m.total_bytes);
  w.Bool(m.aborted);
  w.Bytes(m.error);
}

// ---- Decode ----------------------------------------------------------------------------
// Get() only parses and bounds lengths; ValidateOne() then checks the rules.

absl::Status GetList(WireReader& r, absl::string_view field, size_t max_count, size_t max_len,
                     std::vector<std::string>* v) {
  uint32_t n;
  RETURN_IF_ERROR(r.Count(field, max_count, 4, &n));
  v->resize(n);
  for (uint32_t i = 0; i < n; ++i) RETURN_IF_ERROR(r.Bytes(Idx(field, i), max_len, &(*v)[i]));
  return absl::OkStatus();
}

absl::Status Get(WireReader& r, Hello* m) {
  RETURN_IF_ERROR(r.U16("protocol_major", &m->protocol_major));
  RETURN_IF_ERROR(r.U16("protocol_minor", &m->protocol_minor));
  return r.Text("host_version", kMaxVersionString, &m->host_version);
}
absl::Status Get(WireReader& r, Ready* m) {
  RETURN_IF_ERROR(r.U16("protocol_major", &m->protocol_major));
  RETURN_IF_ERROR(r.U16("protocol_minor", &m->protocol_minor));
  RETURN_IF_ERROR(r.Text("agent_version", kMaxVersionString, &m->agent_version));
  return GetList(r, "capabilities", kMaxCapabilities, 64, &m->capabilities);
}
absl::Status Get(WireReader& r, Ping* m) { return r.U64("nonce", &m->nonce); }
absl::Status Get(WireReader& r, Pong* m) {
  RETURN_IF_ERROR(r.U64("nonce", &m->nonce));
  RETURN_IF_ERROR(r.U64("uptime_ms", &m->uptime_ms));
  RETURN_IF_ERROR(r.U32("load1_milli", &m->load1_milli));
  RETURN_IF_ERROR(r.U32("load5_milli", &m->load5_milli));
  RETURN_IF_ERROR(r.U32("load15_milli", &m->load15_milli));
  RETURN_IF_ERROR(r.U64("mem_total_bytes", &m->mem_total_bytes));
  return r.U64("mem_available_bytes", &m->mem_available_bytes);
}
absl::Status Get(WireReader& r, ErrorMessage* m) {
  uint16_t code;
  RETURN_IF_ERROR(r.U16("code", &code));
  m->code = static_cast<absl::StatusCode>(code);
  return r.Text("message", kMaxErrorMessage, &m->message);
}
absl::Status Get(WireReader& r, Secret* m) {
  RETURN_IF_ERROR(r.Bytes("id", kMaxIdentifierLength, &m->id));
  return r.Bytes("value", kMaxSecretValue, &m->value);
}
absl::Status Get(WireReader& r, BuildJob* m) {
  RETURN_IF_ERROR(r.Bytes("job_id", kMaxIdentifierLength, &m->job_id));
  RETURN_IF_ERROR(r.U32("context_stream", &m->context_stream));
  RETURN_IF_ERROR(r.Text("dockerfile_path", kMaxPath, &m->dockerfile_path));
  RETURN_IF_ERROR(r.Bytes("dockerfile", kMaxDockerfile, &m->dockerfile));
  uint32_t n;
  RETURN_IF_ERROR(r.Count("build_args", kMaxBuildArgs, 8, &n));
  m->build_args.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string f = Idx("build_args", i);
    RETURN_IF_ERROR(r.Bytes(f + ".key", 256, &m->build_args[i].key));
    RETURN_IF_ERROR(r.Text(f + ".value", kMaxBuildArgValue, &m->build_args[i].value));
  }
  RETURN_IF_ERROR(r.Text("target", kMaxShortText, &m->target));
  uint8_t net;
  RETURN_IF_ERROR(r.U8("network", &net));
  m->network = static_cast<NetworkMode>(net);
  RETURN_IF_ERROR(GetList(r, "secret_ids", kMaxSecretsPerJob, kMaxIdentifierLength,
                          &m->secret_ids));
  RETURN_IF_ERROR(r.Count("preload_images", kMaxPreloadImages, 8, &n));
  m->preload_images.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string f = Idx("preload_images", i);
    RETURN_IF_ERROR(r.Text(f + ".ref", kMaxShortText, &m->preload_images[i].ref));
    RETURN_IF_ERROR(r.U32(f + ".stream_id", &m->preload_images[i].stream_id));
  }
  RETURN_IF_ERROR(r.Text("tag", kMaxShortText, &m->tag));
  return r.U64("deadline_ms", &m->deadline_ms);
}
absl::Status Get(WireReader& r, WarmUp* m) {
  uint32_t n;
  RETURN_IF_ERROR(r.Count("preload_images", kMaxPreloadImages, 8, &n));
  m->preload_images.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string f = Idx("preload_images", i);
    RETURN_IF_ERROR(r.Text(f + ".ref", kMaxShortText, &m->preload_images[i].ref));
    RETURN_IF_ERROR(r.U32(f + ".stream_id", &m->preload_images[i].stream_id));
  }
  return r.U64("deadline_ms", &m->deadline_ms);
}
absl::Status Get(WireReader& r, Log* m) {
  uint8_t s;
  RETURN_IF_ERROR(r.U8("stream", &s));
  m->stream = static_cast<LogStream>(s);
  RETURN_IF_ERROR(r.U64("time_ms", &m->time_ms));
  return r.Text("text", kMaxLogLine, &m->text);
}
absl::Status Get(WireReader& r, BuildResult* m) {
  RETURN_IF_ERROR(r.Bytes("job_id", kMaxIdentifierLength, &m->job_id));
  RETURN_IF_ERROR(r.I32("exit_status", &m->exit_status));
  RETURN_IF_ERROR(r.Bytes("image_digest", 128, &m->image_digest));
  RETURN_IF_ERROR(r.U32("image_stream", &m->image_stream));
  uint32_t n;
  RETURN_IF_ERROR(r.Count("phases", kMaxPhases, 12, &n));
  m->phases.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string f = Idx("phases", i);
    RETURN_IF_ERROR(r.Bytes(f + ".name", 64, &m->phases[i].name));
    RETURN_IF_ERROR(r.U64(f + ".duration_ms", &m->phases[i].duration_ms));
  }
  return r.Text("error", kMaxErrorMessage, &m->error);
}
absl::Status Get(WireReader& r, Exec* m) {
  RETURN_IF_ERROR(GetList(r, "argv", kMaxArgv, kMaxArg, &m->argv));
  RETURN_IF_ERROR(GetList(r, "env", kMaxArgv, kMaxArg, &m->env));
  RETURN_IF_ERROR(r.Bytes("cwd", kMaxPath, &m->cwd));
  RETURN_IF_ERROR(r.U32("stdin_stream", &m->stdin_stream));
  return r.U64("deadline_ms", &m->deadline_ms);
}
absl::Status Get(WireReader& r, ExecStarted* m) {
  RETURN_IF_ERROR(r.U32("pid", &m->pid));
  RETURN_IF_ERROR(r.U32("stdout_stream", &m->stdout_stream));
  return r.U32("stderr_stream", &m->stderr_stream);
}
absl::Status Get(WireReader& r, ExecResult* m) {
  RETURN_IF_ERROR(r.I32("exit_code", &m->exit_code));
  RETURN_IF_ERROR(r.I32("signal", &m->signal));
  RETURN_IF_ERROR(r.U64("duration_ms", &m->duration_ms));
  return r.Text("error", kMaxErrorMessage, &m->error);
}
absl::Status Get(WireReader& r, StreamEnd* m) {
  RETURN_IF_ERROR(r.U64("total_bytes", &m->total_bytes));
  RETURN_IF_ERROR(r.Bool("aborted", &m->aborted));
  return r.Text("error", kMaxErrorMessage, &m->error);
}

template <typename T>
absl::StatusOr<Message> DecodeOne(const Frame& frame) {
  T m;
  const std::string name = FrameTypeName(frame.type);
  WireReader r(name, frame.payload);
  absl::Status s = Get(r, &m);
  if (s.ok()) s = r.Done();
  if constexpr (std::is_same_v<T, StreamEnd>) m.stream_id = frame.stream_id;
  if (s.ok()) s = ValidateOne(m);
  if (!s.ok()) {
    // A refused Secret (bad id, trailing bytes) may already hold its value: wipe it.
    if constexpr (std::is_same_v<T, Secret>) SecureWipe(m.value);
    return s;
  }
  Message out(std::move(m));
  // A moved-from short string keeps its bytes in its inline buffer: zero them too.
  if constexpr (std::is_same_v<T, Secret>) SecureWipe(m.value);
  return out;
}

// Frame type for each alternative of Message, in variant order.
constexpr FrameType kTypes[] = {
    FrameType::kHello,     FrameType::kReady,       FrameType::kPing,
    FrameType::kPong,      FrameType::kError,       FrameType::kSecret,
    FrameType::kBuildJob,  FrameType::kLog,         FrameType::kBuildResult,
    FrameType::kExec,      FrameType::kExecStarted, FrameType::kExecResult,
    FrameType::kStreamEnd, FrameType::kWarmUp,
};
static_assert(std::size(kTypes) == std::variant_size_v<Message>);

}  // namespace

FrameType FrameTypeOf(const Message& m) { return kTypes[m.index()]; }

std::string MessageName(const Message& m) {
  return FrameTypeName(static_cast<uint8_t>(FrameTypeOf(m)));
}

absl::Status Validate(const Message& m) {
  return std::visit([](const auto& x) { return ValidateOne(x); }, m);
}

absl::StatusOr<Frame> EncodeMessage(const Message& m) {
  RETURN_IF_ERROR(Validate(m));
  WireWriter w;
  std::visit([&w](const auto& x) { Put(w, x); }, m);
  std::string payload = w.Take();
  if (payload.size() > kMaxPayload) {
    return absl::ResourceExhaustedError(absl::StrCat(MessageName(m), " of ", payload.size(),
                                                     " bytes exceeds the frame limit ",
                                                     kMaxPayload));
  }
  const uint32_t sid = std::holds_alternative<StreamEnd>(m) ? std::get<StreamEnd>(m).stream_id
                                                            : 0;
  return Frame(FrameTypeOf(m), sid, std::move(payload));
}

absl::StatusOr<Message> DecodeMessage(const Frame& frame) {
  switch (static_cast<FrameType>(frame.type)) {
    case FrameType::kHello: return DecodeOne<Hello>(frame);
    case FrameType::kReady: return DecodeOne<Ready>(frame);
    case FrameType::kPing: return DecodeOne<Ping>(frame);
    case FrameType::kPong: return DecodeOne<Pong>(frame);
    case FrameType::kError: return DecodeOne<ErrorMessage>(frame);
    case FrameType::kSecret: return DecodeOne<Secret>(frame);
    case FrameType::kBuildJob: return DecodeOne<BuildJob>(frame);
    case FrameType::kLog: return DecodeOne<Log>(frame);
    case FrameType::kBuildResult: return DecodeOne<BuildResult>(frame);
    case FrameType::kExec: return DecodeOne<Exec>(frame);
    case FrameType::kExecStarted: return DecodeOne<ExecStarted>(frame);
    case FrameType::kExecResult: return DecodeOne<ExecResult>(frame);
    case FrameType::kStreamEnd: return DecodeOne<StreamEnd>(frame);
    case FrameType::kWarmUp: return DecodeOne<WarmUp>(frame);
    case FrameType::kChunk:
      return absl::InvalidArgumentError(absl::StrCat(
          "Chunk frame on stream ", frame.stream_id, " carries stream bytes, not a message"));
  }
  return absl::UnimplementedError(
      absl::StrCat("unknown message type ", FrameTypeName(frame.type), " (", frame.payload.size(),
                   " bytes); this side speaks protocol ", kProtocolMajor, ".", kProtocolMinor));
}

absl::Status ToStatus(const ErrorMessage& e) {
  return absl::Status(e.code, absl::StrCat("peer error: ", e.message));
}

ErrorMessage FromStatus(const absl::Status& s) {
  ErrorMessage e;
  e.code = s.ok() ? absl::StatusCode::kUnknown : s.code();
  // SanitizeUtf8 at most triples the length: cut first so the result is within the limit.
  e.message = SanitizeUtf8(s.message().substr(0, kMaxErrorMessage / 3));
  return e;
}

absl::Status CheckCompatible(uint16_t peer_major, uint16_t peer_minor) {
  if (peer_major == kProtocolMajor) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "protocol major version mismatch: peer speaks ", peer_major, ".", peer_minor,
      ", this side speaks ", kProtocolMajor, ".", kProtocolMinor));
}

}  // namespace kiln::agent

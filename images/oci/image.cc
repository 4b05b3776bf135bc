#include "images/oci/image.h"

#include "absl/strings/str_cat.h"
#include "images/oci/digest.h"

namespace kiln::oci {
namespace {

using json = nlohmann::json;

json ParseJson(absl::string_view bytes) {
  return json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace

json DescriptorToJson(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

absl::StatusOr<Descriptor> DescriptorFromJson(const json& j, absl::string_view where) {
  if (!j.is_object() || !j.contains("digest") || !j["digest"].is_string() ||
      !j.contains("size") || !j["size"].is_number_integer() || !j.contains("mediaType") ||
      !j["mediaType"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": descriptor needs string mediaType, string digest, integer size"));
  }
  Descriptor d;
  d.media_type = j["mediaType"].get<std::string>();
  d.digest = j["digest"].get<std::string>();
  d.size = j["size"].get<int64_t>();
  if (d.size < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative size"));
  if (absl::Status s = ValidateDigest(d.digest); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  if (j.contains("annotations") && j["annotations"].is_object()) {
    for (auto& [k, v] : j["annotations"].items()) {
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
    }
  }
  return d;
}

std::string ManifestJson(const Manifest& m) {
  json layers = json::array();
  for (const Descriptor& l : m.layers) layers.push_back(DescriptorToJson(l));
  json j = {
      {"schemaVersion", 2},
      {"mediaType", m.media_type},
      {"config", DescriptorToJson(m.config)},
      {"layers", layers},
  };
  if (!m.annotations.empty()) j["annotations"] = m.annotations;
  return j.dump();
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view bytes) {
  json m = ParseJson(bytes);
  if (!m.is_object()) return absl::InvalidArgumentError("image manifest is not a JSON object");
  std::string mt = std::string(kMediaTypeImageManifest);
  if (m.contains("mediaType")) {
    if (!m["mediaType"].is_string()) {
      return absl::InvalidArgumentError("image manifest mediaType is not a string");
    }
    mt = m["mediaType"].get<std::string>();
  }
  if (mt == kMediaTypeImageIndex || m.contains("manifests")) {
    return absl::InvalidArgumentError(
        "the layout holds an image index (multi-platform image): not supported, publish a "
        "single image manifest");
  }
  if (mt != kMediaTypeImageManifest && mt != kMediaTypeDockerManifest) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported manifest mediaType ", mt));
  }
  if (!m.contains("schemaVersion") || m["schemaVersion"] != 2) {
    return absl::InvalidArgumentError("image manifest schemaVersion is not 2");
  }
  if (!m.contains("config") || !m.contains("layers") || !m["layers"].is_array()) {
    return absl::InvalidArgumentError("image manifest needs config and layers");
  }
  Manifest out;
  out.media_type = mt;
  absl::StatusOr<Descriptor> config = DescriptorFromJson(m["config"], "manifest config");
  if (!config.ok()) return config.status();
  out.config = *std::move(config);
  for (size_t i = 0; i < m["layers"].size(); ++i) {
    absl::StatusOr<Descriptor> d = DescriptorFromJson(m["layers"][i], absl::StrCat("layer ", i));
    if (!d.ok()) return d.status();
    out.layers.push_back(*std::move(d));
  }
  if (m.contains("annotations") && m["annotations"].is_object()) {
    for (auto& [k, v] : m["annotations"].items()) {
      if (v.is_string()) out.annotations[k] = v.get<std::string>();
    }
  }
  return out;
}

std::string IndexJson(const std::vector<Descriptor>& manifests) {
  json ms = json::array();
  for (const Descriptor& d : manifests) ms.push_back(DescriptorToJson(d));
  json j = {{"schemaVersion", 2}, {"manifests", ms}};
  return j.dump();
}

absl::StatusOr<std::vector<Descriptor>> ParseIndex(absl::string_view bytes,
                                                   absl::string_view where) {
  json index = ParseJson(bytes);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no manifests array"));
  }
  std::vector<Descriptor> out;
  for (size_t i = 0; i < index["manifests"].size(); ++i) {
    absl::StatusOr<Descriptor> d =
        DescriptorFromJson(index["manifests"][i], absl::StrCat(where, " manifest ", i));
    if (!d.ok()) return d.status();
    out.push_back(*std::move(d));
  }
  return out;
}

std::string ImageConfigJson(const ImageConfig& c) {
  json config = json::object();
  if (!c.entrypoint.empty()) config["Entrypoint"] = c.entrypoint;
  if (!c.cmd.empty()) config["Cmd"] = c.cmd;
  if (!c.env.empty()) config["Env"] = c.env;
  if (!c.working_dir.empty()) config["WorkingDir"] = c.working_dir;
  if (!c.user.empty()) config["User"] = c.user;
  if (!c.labels.empty()) config["Labels"] = c.labels;
  json history = json::array();
  for (const HistoryEntry& h : c.history) {
    history.push_back({{"created", h.created}, {"created_by", h.created_by}});
  }
  json j = {
      {"architecture", c.architecture},
      {"os", c.os},
      {"created", c.created},
      {"config", config},
      {"rootfs", {{"type", "layers"}, {"diff_ids", c.diff_ids}}},
      {"history", history},
  };
  return j.dump();
}

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view bytes) {
  json j = ParseJson(bytes);
  if (!j.is_object()) return absl::InvalidArgumentError("image config is not a JSON object");
  if (!j.contains("rootfs") || !j["rootfs"].is_object() || !j["rootfs"].contains("diff_ids") ||
      !j["rootfs"]["diff_ids"].is_array()) {
    return absl::InvalidArgumentError("image config has no rootfs.diff_ids array");
  }
  ImageConfig c;
  c.architecture = j.contains("architecture") && j["architecture"].is_string()
                       ? j["architecture"].get<std::string>() : "";
  c.os = j.contains("os") && j["os"].is_string() ? j["os"].get<std::string>() : "";
  c.created = j.contains("created") && j["created"].is_string() ? j["created"].get<std::string>() : "";
  const json& ids = j["rootfs"]["diff_ids"];
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string id = ids[i].is_string() ? ids[i].get<std::string>() : ids[i].dump();
    if (absl::Status s = ValidateDigest(id); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("rootfs.diff_ids[", i, "]: ", s.message()));
    }
    c.diff_ids.push_back(id);
  }
  if (j.contains("history") && j["history"].is_array()) {
    for (const json& h : j["history"]) {
      if (!h.is_object()) continue;
      HistoryEntry e;
      if (h.contains("created") && h["created"].is_string()) e.created = h["created"].get<std::string>();
      if (h.contains("created_by") && h["created_by"].is_string()) {
        e.created_by = h["created_by"].get<std::string>();
      }
      c.history.push_back(std::move(e));
    }
  }
  return c;
}

}  // namespace kiln::oci

// File: third_party/absl_ext/command_flags.cc (see command_flags.h)
#include "third_party/absl_ext/command_flags.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace kiln {
namespace {

struct Known {
  absl::CommandLineFlag* flag;
  std::string spelling;  // as --help shows it, without dashes
  bool repeated;         // std::vector<std::string>: one value per occurrence
  bool is_bool;
};

std::string Spelling(const std::string& name, const CommandFlagSpec& spec) {
  for (const auto& [alias, target] : spec.aliases)
    if (target == name) return alias;
  std::string s = name;
  if (spec.dashes) std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

}  // namespace

absl::Status ParsedCommandFlags::Require(absl::string_view name) const {
  if (Has(name)) return absl::OkStatus();
  auto it = spelling.find(name);
  return absl::InvalidArgumentError(
      absl::StrCat("missing --", it == spelling.end() ? std::string(name) : it->second));
}

absl::StatusOr<ParsedCommandFlags> ParseCommandFlags(const std::vector<std::string>& args,
                                                     const CommandFlagSpec& spec) {
  ParsedCommandFlags out;
  out.command = spec.command;
  std::map<std::string, Known, std::less<>> known;  // by absl name
  std::vector<std::string> spelled;
  for (const std::string& name : spec.flags) {
    absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
    if (f == nullptr || f->IsRetired()) {
      return absl::InternalError(
          absl::StrCat(spec.command, ": --", name, " is not a registered absl flag"));
    }
    Known k{f, Spelling(name, spec), f->IsOfType<std::vector<std::string>>(), f->IsOfType<bool>()};
    if (k.repeated && std::none_of(spec.repeated.begin(), spec.repeated.end(), [&](RepeatedFlag* r) {
          return absl::GetFlagReflectionHandle(*r).Name() == name;
        })) {
      return absl::InternalError(absl::StrCat(spec.command, ": --", name,
                                              " is a list flag missing from spec.repeated"));
    }
    spelled.push_back(absl::StrCat("--", k.spelling));
    out.spelling[name] = k.spelling;
    known.emplace(name, k);
  }
  for (const std::string& a : args) {
    if (a == "--") break;
    if (a == "--help" || a == "-h" || a == "-help") {
      out.help = true;
      return out;
    }
  }
  auto unknown = [&](absl::string_view arg) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown argument \"", arg, "\" (", spec.command,
        spelled.empty()       ? " takes no flags; "
        : spelled.size() <= 8 ? absl::StrCat(" takes ", absl::StrJoin(spelled, ", "), "; ")
                              : ": ",
        "see --help)"));
  };
  // Resolves a spelled name to its flag; nullptr if this command has no such flag.
  auto lookup = [&](std::string name) -> const Known* {
    if (auto a = spec.aliases.find(name); a != spec.aliases.end()) {
      name = a->second;
    } else {
      if (spec.dashes) std::replace(name.begin(), name.end(), '-', '_');
      for (const auto& [alias, target] : spec.aliases)
        if (target == name) return nullptr;  // only through its alias
    }
    auto it = known.find(name);
    return it == known.end() ? nullptr : &it->second;
  };
  std::map<std::string, std::vector<std::string>> repeated;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      out.positional.insert(out.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    absl::string_view body = arg;
    if (body.size() < 2 || !absl::ConsumePrefix(&body, "-")) {
      out.positional.push_back(arg);
      continue;
    }
    absl::ConsumePrefix(&body, "-");
    const size_t eq = body.find('=');
    std::string name(body.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    std::string value = has_value ? std::string(body.substr(eq + 1)) : "";
    const Known* k = lookup(name);
    if (k == nullptr && !has_value && absl::StartsWith(name, "no")) {
      const Known* negated = lookup(name.substr(2));
      if (negated != nullptr && negated->is_bool) {
        k = negated;
        value = "false";
      }
    }
    if (k == nullptr) return unknown(arg);
    if (!has_value && value.empty()) {
      if (k->is_bool) {
        value = "true";
        if (i + 1 < args.size() && (args[i + 1] == "true" || args[i + 1] == "false")) {
          value = args[++i];
        }
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", k->spelling, " needs a value"));
      }
    }
    const std::string absl_name(k->flag->Name());
    out.given.insert(absl_name);
    if (k->repeated) {
      repeated[absl_name].push_back(value);
      continue;
    }
    std::string error;
    if (!k->flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", k->spelling, "=", value, ": ", error));
    }
  }
  for (RepeatedFlag* f : spec.repeated) {
    auto it = repeated.find(std::string(absl::GetFlagReflectionHandle(*f).Name()));
    if (it != repeated.end()) absl::SetFlag(f, it->second);
  }
  return out;
}

std::string CommandFlagsHelp(const CommandFlagSpec& spec) {
  std::string out;
  for (const std::string& name : spec.flags) {
    const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
    if (f == nullptr) continue;
    const bool repeated = f->IsOfType<std::vector<std::string>>();
    const bool is_bool = f->IsOfType<bool>();
    absl::StrAppend(&out, "  --", Spelling(name, spec), is_bool ? "" : "=VALUE", "\n      ",
                    f->Help());
    if (repeated) {
      absl::StrAppend(&out, " (repeatable)");
    } else if (!f->DefaultValue().empty()) {
      absl::StrAppend(&out, " (default: ", f->DefaultValue(), ")");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace kiln

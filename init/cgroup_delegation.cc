// File: init/cgroup_delegation.cc
#include "init/cgroup_delegation.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kiln::init {
namespace {

bool IsControllerName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_') return false;
  }
  return true;
}

}  // namespace

std::string CgroupOpString(const CgroupOp& op) {
  switch (op.kind) {
    case CgroupOp::kWrite:
      return absl::StrCat("write ", op.path, " ", op.content);
    case CgroupOp::kMkdir: {
      char octal[8];
      snprintf(octal, sizeof(octal), "%04o", op.mode & 07777u);
      return absl::StrCat("mkdir ", op.path, " ", octal);
    }
    case CgroupOp::kChown:
      return absl::StrCat("chown ", op.path, " ", op.uid, ":", op.gid);
  }
  return "?";
}

absl::StatusOr<std::vector<std::string>> ParseControllers(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view name : absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    if (!IsControllerName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cgroup.controllers: \"", name, "\" is not a controller name ([a-z0-9_]+)"));
    }
    out.emplace_back(name);
  }
  return out;
}

absl::StatusOr<DelegationPlan> PlanDelegation(const CgroupDelegate& to,
                                              absl::string_view root_controllers,
                                              absl::string_view mount_point) {
  if (to.uid == 0) {
    return absl::InvalidArgumentError("cgroup delegation to uid 0: root needs no delegation");
  }
  absl::StatusOr<std::vector<std::string>> offered = ParseControllers(root_controllers);
  if (!offered.ok()) return offered.status();

  DelegationPlan plan;
  plan.path = absl::StrCat(mount_point, "/", cgroup::kDelegatedName);
  plan.to = to;
  for (absl::string_view want : cgroup::kDelegatedControllers) {
    bool present = std::find(offered->begin(), offered->end(), want) != offered->end();
    (present ? plan.controllers : plan.missing).emplace_back(want);
  }

  // 1. Controllers are enabled top-down: the root's subtree_control, one write.
  if (!plan.controllers.empty()) {
    std::vector<std::string> enable;
    for (const std::string& c : plan.controllers) enable.push_back(absl::StrCat("+", c));
    plan.ops.push_back({CgroupOp::kWrite,
                        absl::StrCat(mount_point, "/", cgroup::kSubtreeControlFile),
                        absl::StrJoin(enable, " ")});
  }
  // 2. The delegated cgroup.
  plan.ops.push_back({CgroupOp::kMkdir, plan.path, "", 0755});
  // 3. The directory and exactly the delegatable interface files (not the resource knobs).
  plan.ops.push_back({CgroupOp::kChown, plan.path, "", 0, to.uid, to.gid});
  for (absl::string_view file : cgroup::kDelegatedFiles) {
    plan.ops.push_back({CgroupOp::kChown, absl::StrCat(plan.path, "/", file), "", 0, to.uid,
                        to.gid});
  }
  return plan;
}

absl::Status ApplyDelegation(Sys& sys, Console& console, const DelegationPlan& plan) {
  for (const CgroupOp& op : plan.ops) {
    absl::Status s;
    switch (op.kind) {
      case CgroupOp::kWrite:
        s = sys.WriteFile(op.path, op.content);
        break;
      case CgroupOp::kMkdir:
        s = sys.MkdirAll(op.path, op.mode);
        break;
      case CgroupOp::kChown:
        s = sys.Chown(op.path, op.uid, op.gid);
        break;
    }
    if (!s.ok()) return s;
  }
  std::string fields = absl::StrCat(
      "path=", plan.path, " uid=", plan.to.uid, " gid=", plan.to.gid, " controllers=",
      plan.controllers.empty() ? "none" : absl::StrJoin(plan.controllers, ","));
  if (!plan.missing.empty()) absl::StrAppend(&fields, " missing=", absl::StrJoin(plan.missing, ","));
  console.Step("delegate", fields);
  return absl::OkStatus();
}

}  // namespace kiln::init

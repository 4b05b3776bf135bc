// File: harness/vmm/vmm_select_test.cc
// DecideVmm's table (every request x host situation), the fail-fast message, ParseVmmKind,
// and MakeVmm's fail-fast on this host when Cloud Hypervisor is asked for and absent.
#include "harness/vmm/vmm_select.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

VmmHostFacts AllPresent() {
  VmmHostFacts f;
  f.ch_binary = "cloud-hypervisor";
  f.ch_found = true;
  f.ch_resolved = "/usr/bin/cloud-hypervisor";
  f.cpu_has_virt = true;
  f.dev_kvm_exists = true;
  f.dev_kvm_opens = true;
  return f;
}

TEST(ParseVmmKind, NamesAndErrors) {
  for (VmmKind k : {VmmKind::kAuto, VmmKind::kCloudHypervisor, VmmKind::kQemu}) {
    ASSERT_OK_AND_ASSIGN(VmmKind parsed, ParseVmmKind(VmmKindName(k)));
    EXPECT_EQ(parsed, k);
  }
  ASSERT_OK_AND_ASSIGN(VmmKind ch, ParseVmmKind("ch"));
  EXPECT_EQ(ch, VmmKind::kCloudHypervisor);
  EXPECT_THAT(ParseVmmKind("firecracker"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected auto, cloud-hypervisor or qemu")));
  EXPECT_THAT(ParseVmmKind(""), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(DecideVmm, Table) {
  struct Row {
    const char* name;
    VmmKind requested;
    void (*facts)(VmmHostFacts&);
    absl::StatusCode code;
    VmmKind kind;
    const char* reason_has;
  };
  const Row rows[] = {
      {"qemu always", VmmKind::kQemu, [](VmmHostFacts& f) { f = VmmHostFacts{}; },
       absl::StatusCode::kOk, VmmKind::kQemu, "qemu requested"},
      {"ch all present", VmmKind::kCloudHypervisor, [](VmmHostFacts&) {}, absl::StatusCode::kOk,
       VmmKind::kCloudHypervisor, "/usr/bin/cloud-hypervisor"},
      {"ch no binary", VmmKind::kCloudHypervisor, [](VmmHostFacts& f) { f.ch_found = false; },
       absl::StatusCode::kFailedPrecondition, {}, "no `cloud-hypervisor` binary in PATH"},
      {"ch no /dev/kvm", VmmKind::kCloudHypervisor,
       [](VmmHostFacts& f) { f.dev_kvm_exists = f.dev_kvm_opens = false; },
       absl::StatusCode::kFailedPrecondition, {}, "/dev/kvm is missing"},
      {"ch kvm no rw", VmmKind::kCloudHypervisor, [](VmmHostFacts& f) { f.dev_kvm_opens = false; },
       absl::StatusCode::kFailedPrecondition, {}, "does not open read-write"},
      {"ch pvm kvm", VmmKind::kCloudHypervisor, [](VmmHostFacts& f) { f.cpu_has_virt = false; },
       absl::StatusCode::kFailedPrecondition, {}, "no vmx/svm"},
      {"ch explicit path missing", VmmKind::kCloudHypervisor,
       [](VmmHostFacts& f) {
         f.ch_binary = "/opt/ch/cloud-hypervisor";
         f.ch_found = false;
       },
       absl::StatusCode::kFailedPrecondition, {}, "no Cloud Hypervisor executable at /opt/ch/"},
      {"auto all present", VmmKind::kAuto, [](VmmHostFacts&) {}, absl::StatusCode::kOk,
       VmmKind::kCloudHypervisor, "auto: /usr/bin/cloud-hypervisor and usable KVM"},
      {"auto no binary", VmmKind::kAuto, [](VmmHostFacts& f) { f.ch_found = false; },
       absl::StatusCode::kOk, VmmKind::kQemu, "auto: not Cloud Hypervisor: no `cloud-hypervisor`"},
      {"auto binary, no kvm", VmmKind::kAuto, [](VmmHostFacts& f) { f.cpu_has_virt = false; },
       absl::StatusCode::kOk, VmmKind::kQemu, "no vmx/svm"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    VmmHostFacts f = AllPresent();
    r.facts(f);
    absl::StatusOr<VmmDecision> d = DecideVmm(r.requested, f);
    ASSERT_EQ(d.status().code(), r.code) << d.status();
    if (d.ok()) {
      EXPECT_EQ(d->kind, r.kind);
      EXPECT_THAT(d->reason, HasSubstr(r.reason_has));
    } else {
      EXPECT_THAT(d.status().message(), HasSubstr(r.reason_has));
    }
  }
}

TEST(DecideVmm, FailFastMessageNamesEverythingMissing) {
  VmmHostFacts none;  // nothing at all, as on these machines
  EXPECT_THAT(
      DecideVmm(VmmKind::kCloudHypervisor, none),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("--vmm=cloud-hypervisor: Cloud Hypervisor cannot run on this host"),
                     HasSubstr("no `cloud-hypervisor` binary in PATH"),
                     HasSubstr("--ch_binary=PATH"), HasSubstr("/dev/kvm is missing"),
                     HasSubstr("no vmx/svm"), HasSubstr("Use --vmm=qemu"))));
  EXPECT_EQ(CloudHypervisorMissing(AllPresent()), "");
  EXPECT_THAT(CloudHypervisorMissing(none), Not(HasSubstr("read-write")));
}

TEST(ReadVmmHostFacts, ResolvesBinaries) {
  VmmHostFacts sh = ReadVmmHostFacts("sh");  // any binary in PATH resolves
  EXPECT_TRUE(sh.ch_found);
  EXPECT_THAT(sh.ch_resolved, HasSubstr("/sh"));
  VmmHostFacts missing = ReadVmmHostFacts("/nonexistent/cloud-hypervisor");
  EXPECT_FALSE(missing.ch_found);
  EXPECT_EQ(missing.ch_binary, "/nonexistent/cloud-hypervisor");
}

TEST(MakeVmm, CloudHypervisorAbsentFailsFast) {
  VmmSelectOptions o;
  o.kind = VmmKind::kCloudHypervisor;
  o.ch_binary = "/nonexistent/cloud-hypervisor";
  EXPECT_THAT(MakeVmm(o), StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("no Cloud Hypervisor executable at /nonexistent/")));
}

}  // namespace
}  // namespace kiln::harness

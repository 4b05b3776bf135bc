#include "agent/protocol/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace kiln::agent {
namespace internal {
uint32_t Crc32cSoftwareForTest(uint32_t crc, absl::string_view data);
}
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);           // RFC 3720 B.4 check value
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4: 32 zero bytes
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32c, ExtendEqualsWhole) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 7 + 3));
  for (size_t split : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    SCOPED_TRACE(split);
    EXPECT_EQ(Crc32cExtend(Crc32c(data.substr(0, split)), data.substr(split)), Crc32c(data));
  }
}

TEST(Crc32c, SoftwareMatchesDispatched) {
  std::string data;
  for (int i = 0; i < 4099; ++i) data.push_back(static_cast<char>((i * 131) ^ (i >> 3)));
  for (size_t len : {0, 1, 3, 8, 15, 16, 17, 4099}) {
    SCOPED_TRACE(len);
    EXPECT_EQ(internal::Crc32cSoftwareForTest(0, data.substr(0, len)),
              Crc32c(data.substr(0, len)));
  }
}

}  // namespace
}  // namespace kiln::agent

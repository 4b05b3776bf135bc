// File: agent/runner/redact_oracle.h
// -----------------------------------------------------------------------------
//
// Test-only: an independent, slow, obviously-correct check of the redaction invariant, used by
// redact_test.cc and fuzz/redact_fuzzer.cc. It does not use agent/secret_forms: it builds the
// set of every 16-character window of every covered form as plain strings, reassembles the
// lines a sink received per BuildKit step ("#<n> <secs> " prefix stripped, lines joined by
// '\n'), and looks every window of the three canonical views of that text up in the set.
//
// Example:
//
//   WindowOracle oracle("ghp_...");
//   EXPECT_EQ(oracle.Survivors(lines), 0) << oracle.first_survivor();
#ifndef KILN_AGENT_RUNNER_REDACT_ORACLE_H_
#define KILN_AGENT_RUNNER_REDACT_ORACLE_H_

#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/escaping.h"

namespace kiln::agent::runner::testing {

class WindowOracle {
 public:
  // WindowOracle(secret): the windows of secret's raw, folded, base64 and hex forms.
  explicit WindowOracle(const std::string& secret) {
    Add(0, secret, 1);
    Add(1, View(1, secret), 8);
    for (int k = 0; k < 3; ++k) {
      // base64(k zero bytes + secret + 2 zero bytes): the characters whose 6 bits all come
      // from the secret's bytes.
      const std::string enc = absl::Base64Escape(std::string(k, '\0') + secret + std::string(2, '\0'));
      const size_t first = (8 * k + 5) / 6, last = 8 * (k + secret.size()) / 6;
      if (last > first) Add(1, enc.substr(first, last - first), 8);
    }
    Add(2, absl::BytesToHexString(secret), 8);
  }

  // Survivors(lines): windows of any form found in `lines` reassembled per step.
  int Survivors(const std::vector<std::string>& lines) {
    std::map<std::string, std::string> streams;
    for (const std::string& l : lines) {
      std::string key, content = l;
      // "#" digits+ " " digits+ ["." digits*] (" " | end)
      auto digits = [&](size_t k) {
        while (k < l.size() && isdigit(static_cast<unsigned char>(l[k]))) ++k;
        return k;
      };
      const size_t i = l.empty() || l[0] != '#' ? 0 : digits(1);
      if (i > 1 && i < l.size() && l[i] == ' ') {
        size_t j = digits(i + 1);
        if (j > i + 1) {
          if (j < l.size() && l[j] == '.') j = digits(j + 1);
          if (j == l.size() || l[j] == ' ') {
            key = l.substr(0, i);
            content = j == l.size() ? "" : l.substr(j + 1);
          }
        }
      }
      streams[key] += content + "\n";
    }
    int n = 0;
    for (const auto& [key, text] : streams) {
      for (int v = 0; v < 3; ++v) {
        const std::string t = View(v, text);
        for (size_t len : lengths_[v]) {
          for (size_t i = 0; i + len <= t.size(); ++i) {
            const std::string w = t.substr(i, len);
            // A window that ends on an empty line (in "\n\n") has nothing on its last line to
            // mask; its characters on earlier lines are the chain head (< 16 characters).
            if (v == 0 && w.size() >= 2 && w.compare(w.size() - 2, 2, "\n\n") == 0) continue;
            if (w.find_first_not_of('\n') == std::string::npos) continue;
            if (windows_[v].count(w) != 0) {
              if (n == 0) first_ = key + " view " + std::to_string(v) + ": " + w;
              ++n;
            }
          }
        }
      }
    }
    return n;
  }
  const std::string& first_survivor() const { return first_; }

  // View(v, text): 0 raw; 1 whitespace removed, '-'->'+', '_'->'/'; 2 whitespace removed,
  // lowercase.
  static std::string View(int v, const std::string& text) {
    if (v == 0) return text;
    std::string out;
    for (char c : text) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') continue;
      if (v == 1) out.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
      if (v == 2) out.push_back(static_cast<char>(tolower(static_cast<unsigned char>(c))));
    }
    return out;
  }

 private:
  void Add(int v, const std::string& form, size_t min_whole) {
    if (form.size() >= 16) {
      for (size_t i = 0; i + 16 <= form.size(); ++i) windows_[v].insert(form.substr(i, 16));
      lengths_[v].insert(16);
    } else if (form.size() >= min_whole && !form.empty()) {
      windows_[v].insert(form);
      lengths_[v].insert(form.size());
    }
  }
  std::unordered_set<std::string> windows_[3];
  std::set<size_t> lengths_[3];
  std::string first_;
};

}  // namespace kiln::agent::runner::testing

#endif  // KILN_AGENT_RUNNER_REDACT_ORACLE_H_

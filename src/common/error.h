#pragma once
// Errors that carry data. Every user-facing failure is a harmonia::Error whose
// message is one line naming the file/field and what was expected; the CLI
// prints it and exits with exit_code() (2 for bad input, 1 for our own faults).
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace harmonia {

enum class ErrorKind {
  InvalidInput,  // bad file, bad flag, over-long prompt: the user's to fix (exit 2)
  Io,            // file missing / unreadable (exit 2)
  Unsupported,   // valid input we do not handle yet (exit 2)
  Internal,      // our bug (exit 1)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return kind_ == ErrorKind::Internal ? 1 : 2; }

 private:
  ErrorKind kind_;
};

// fail(kind, "fmt {}", args...) throws a harmonia::Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace harmonia

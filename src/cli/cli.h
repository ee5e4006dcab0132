#pragma once
namespace harmonia::cli {
// Entry point of the `harmonia` binary: parses the subcommand and its flags,
// runs it, prints errors as one line and returns the exit code (2 for bad input).
int run(int argc, char** argv);
}  // namespace harmonia::cli

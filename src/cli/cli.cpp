#include "cli/cli.h"

#include <cstdio>

namespace harmonia::cli {
int run(int, char**) {
  std::fprintf(stderr, "harmonia: not built yet\n");
  return 2;
}
}  // namespace harmonia::cli

#include "cli/cli.h"

int main(int argc, char** argv) { return harmonia::cli::run(argc, argv); }

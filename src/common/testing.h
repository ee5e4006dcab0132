#pragma once
// Test helpers shared by every subsystem's *_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "common/env.h"

// Skip the current test with a message when a shared file is missing.
#define HARMONIA_REQUIRE_SHARED(rel)                                                   \
  do {                                                                                 \
    if (!::harmonia::file_exists(::harmonia::shared_path(rel)))                        \
      GTEST_SKIP() << "shared file missing: " << ::harmonia::shared_path(rel)          \
                   << " (set HARMONIA_SHARED to the shared/ folder)";                  \
  } while (0)

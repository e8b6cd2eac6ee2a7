// check.hpp: the checks every C++ test program shares. Each program counts
// its failures in g_failures and exits non-zero when there are any.
#pragma once

#include "openfl_transport.hpp"

#include <atomic>
#include <cstdio>
#include <exception>
#include <string>

namespace check {

inline std::atomic<int> g_failures{0};

inline void fail(const char *file, int line, const std::string &what) {
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
    g_failures++;
}

// Runs `body`, which must throw openfl::Error with `code` and a message
// containing `needle` (NULL: any message).
template <class F>
void expect_error_at(const char *file, int line, const char *what, openfl::Code code, const char *needle, F &&body) {
    try {
        body();
        fail(file, line, std::string(what) + ": no exception, expected " + openfl::code_name(code));
    } catch (const openfl::Error &e) {
        if (e.code() != code)
            fail(file, line, std::string(what) + ": " + e.what() + ", expected " + openfl::code_name(code));
        else if (needle && e.message().find(needle) == std::string::npos)
            fail(file, line, std::string(what) + ": message \"" + e.message() + "\" lacks \"" + needle + "\"");
    } catch (const std::exception &e) {
        fail(file, line, std::string(what) + ": unexpected exception " + e.what());
    }
}

inline void note(const char *what) {
    std::printf("-- %s\n", what);
    std::fflush(stdout);
}

}  // namespace check

using check::fail;
using check::g_failures;
using check::note;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
    } while (0)
#define CHECK_MSG(cond, msg)                                                                    \
    do {                                                                                        \
        if (!(cond)) check::fail(__FILE__, __LINE__, std::string("CHECK(" #cond "): ") + (msg)); \
    } while (0)
#define EXPECT_ERROR(what, code, needle, ...) \
    check::expect_error_at(__FILE__, __LINE__, what, code, needle, __VA_ARGS__)

// Checks jinja2 makes when it compiles a template.
#pragma once

#include "template/parser.h"

namespace marlin::tmpl {

// jinja2 rejects unknown filter and test names at compile time, except inside {% if %} (test and
// bodies, down to the next loop, macro, call, filter, set or with block) and inside inline
// "a if b else c" expressions, where the error waits until the expression runs. Throws "template syntax error at L:C: no filter named ...".
void check_filter_and_test_names(const ParsedTemplate& tpl);

}  // namespace marlin::tmpl

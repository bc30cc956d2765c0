// Python arithmetic on template values: + - * / // % ** (with Python's int/float rules, floor
// division and modulo signs, string/list repetition and concatenation, printf-style "%" on strings).
#pragma once

#include "template/ast.h"
#include "template/value.h"

namespace marlin::tmpl {

class Interpreter;

// Applies an arithmetic operator (not and/or/~). Errors follow Python's TypeError/ZeroDivisionError
// messages; ints that overflow 64 bits are an error.
Value arithmetic(Interpreter& in, BinaryOp op, const Value& a, const Value& b);

// Python's "format % args" (conversions s, r, d, i, f, F, e, E, g, G, x, X, o, c and %). With
// escape_args (a Markup format), %s and %r arguments are HTML-escaped as markupsafe does.
std::string percent_format(Interpreter& in, const std::string& format, const Value& args, bool escape_args);

// An undefined operand fails with its reason ("'x' is undefined").
void require_defined(const Value& v);

}  // namespace marlin::tmpl

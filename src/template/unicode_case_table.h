// Case-mapping and printability tables generated from Python's unicodedata (tools/gen_unicode_case_table.py).
#pragma once

#include <cstddef>

namespace marlin::tmpl {

// One code point mapped to up to three (zero-padded), sorted by `from`.
struct CaseMapping {
  char32_t from;
  char32_t to[3];
};

struct CodePointRange {
  char32_t first;
  char32_t last;
};

extern const CaseMapping kUpperMappings[];
extern const size_t kUpperMappingCount;
extern const CaseMapping kLowerMappings[];
extern const size_t kLowerMappingCount;
// Only where titlecase differs from uppercase.
extern const CaseMapping kTitleMappings[];
extern const size_t kTitleMappingCount;
// Characters Python treats as cased (str.title's word boundaries), sorted.
extern const CodePointRange kCasedRanges[];
extern const size_t kCasedRangeCount;
// Characters for which Python's str.isprintable() is false (repr() escapes them), sorted.
extern const CodePointRange kNonPrintableRanges[];
extern const size_t kNonPrintableRangeCount;
// Non-ASCII characters Python allows at the start / later in identifiers (XID_Start/XID_Continue).
extern const CodePointRange kIdentifierStartRanges[];
extern const size_t kIdentifierStartRangeCount;
extern const CodePointRange kIdentifierContinueRanges[];
extern const size_t kIdentifierContinueRangeCount;

}  // namespace marlin::tmpl

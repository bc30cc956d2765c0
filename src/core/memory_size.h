// Sizes of memory: the free RAM the kernel reports (/proc/meminfo's MemAvailable), sizes a user
// types ("512M", "1.5G") and sizes shown in messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace marlin {

// MemAvailable in bytes from the text of /proc/meminfo ("MemAvailable:   16318412 kB"), or nullopt
// when the line is missing or garbled (older kernels, other systems).
std::optional<uint64_t> parse_mem_available(std::string_view meminfo);

// MemAvailable of this machine now, or nullopt when /proc/meminfo cannot be read or parsed.
std::optional<uint64_t> mem_available();

// "4096", "512K", "512M", "8G", "1.5G", "2T" (binary units: K = 1024 bytes; an optional trailing
// B or iB, any letter case) to bytes. Throws marlin::Error naming the text for anything else, for
// zero and for sizes beyond 2^63 bytes.
uint64_t parse_memory_size(std::string_view text);

// "1.50 GiB", "512 MiB", "20.0 KiB", "100 B": three significant digits.
std::string format_memory_size(uint64_t bytes);

}  // namespace marlin

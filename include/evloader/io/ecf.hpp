// SPDX-License-Identifier: Apache-2.0
// Prophesee's ECF ("Event Compression Format") chunk codec, the HDF5 filter 0x8ECF of Metavision HDF5
// event files (formats.md §3.2): a decoder that never trusts the chunk, an encoder that mirrors the
// reference implementation's mode choice, and the filter itself for our libhdf5 and for h5py's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"

namespace evloader::ecf {

/// HDF5 filter id of ECF (self-assigned by Prophesee, not registered with the HDF Group).
inline constexpr unsigned kFilterId = 0x8ECF;
/// Most events one chunk may hold (the reference decoder refuses more).
inline constexpr std::size_t kMaxChunkEvents = 65535;
/// u32 info + u64 t0.
inline constexpr std::size_t kHeaderBytes = 12;

/// How x, y and p are stored (t is always run-length coded).
enum class Mode : std::uint8_t {
  masked_x = 0,  ///< y runs, x words with a 5-bit mask of the next pixels, polarity runs
  pack_xp = 1,   ///< y runs, then (x, p) packed 12 bits per event
  pack_yxp = 2,  ///< (y, x, p) packed 24 bits per event
};

struct ChunkHeader {
  std::size_t event_count = 0;
  Mode mode = Mode::masked_x;
  std::int64_t t0 = 0;
};

/// The 12-byte header of a compressed chunk. Throws FormatError ("ECF chunk: ...") when the chunk is
/// shorter than the header, both mode bits are set, or it claims more than kMaxChunkEvents events.
[[nodiscard]] ChunkHeader read_header(std::span<const std::byte> chunk);

/// Decode one chunk into out[0, n) where n = read_header(chunk).event_count, and return n. `capacity` is
/// the room at `out`; a chunk with more events throws. Malformed streams (truncated data, runs that
/// overflow the event count, over-long time deltas) throw FormatError naming the byte position inside
/// the chunk; the decoder never reads outside `chunk` nor writes outside out[0, n).
std::size_t decode(std::span<const std::byte> chunk, EventCD* out, std::size_t capacity);
/// Same, appending to `out`.
void decode(std::span<const std::byte> chunk, EventBuffer& out);

/// The reference encoder's choice, from the first quarter of the events: few repeated rows => pack_yxp;
/// else few x runs of neighbours => pack_xp; else masked_x.
[[nodiscard]] Mode choose_mode(std::span<const EventCD> events) noexcept;

/// An upper bound of the encoded size of n events (any mode, any timestamps).
[[nodiscard]] std::size_t max_encoded_size(std::size_t n) noexcept;

/// Encode at most kMaxChunkEvents events into `out` (at least max_encoded_size(n) bytes) and return the
/// bytes written. The mode defaults to choose_mode(). ECF stores x, y < 2048, p in {0, 1} and time that
/// never decreases inside a chunk; anything else throws ConfigError (the codec could not restore it).
std::size_t encode(std::span<const EventCD> events, std::byte* out, std::optional<Mode> mode = {});
/// Same, replacing the content of `out`.
void encode(std::span<const EventCD> events, std::vector<std::byte>& out, std::optional<Mode> mode = {});

/// Address of a static `H5Z_class2_t` describing the ECF filter. Its callback calls only malloc/free and
/// no HDF5 function, so any libhdf5 loaded in the process can use it, including the copy bundled in
/// h5py's wheels: pass the address to `h5py.h5z.register_filter` (evloader.hdf5.register_ecf_filter()
/// does). Decoding refuses malformed chunks (HDF5 then reports a filter failure); encoding refuses what
/// ECF cannot store (unsorted t, x or y >= 2048, more than 65535 events per chunk).
[[nodiscard]] const void* h5z_filter_class() noexcept;

/// Register the filter with the libhdf5 evloader is linked to (so that plain H5Dread/H5Dwrite through
/// that library apply ECF). Idempotent and thread-safe. Returns false if HDF5 refused.
bool register_filter();

}  // namespace evloader::ecf

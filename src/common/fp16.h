#pragma once
// IEEE half and bfloat16 <-> float conversions (scalar reference versions).
#include <cstdint>
#include <cstring>

namespace harmonia {

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000 | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, overflow to inf.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000;
  const uint32_t absu = u & 0x7fffffff;
  if (absu > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (absu >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // >= 65520 -> inf
  if (absu < 0x38800000) {  // subnormal or zero in half
    if (absu < 0x33000000) return static_cast<uint16_t>(sign);
    const uint32_t e = absu >> 23;
    uint32_t mant = (absu & 0x7fffff) | 0x800000;
    // value = mant * 2^(e-150); the half subnormal unit is 2^-24, so drop 126-e bits.
    const uint32_t s = 126 - e;
    uint32_t half = mant >> s;
    const uint32_t rem = mant & ((1u << s) - 1);
    const uint32_t halfway = 1u << (s - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t r = absu - 0x38000000;  // rebias 127 -> 15
  r += 0xfff + ((r >> 13) & 1);
  return static_cast<uint16_t>(sign | (r >> 13));
}

}  // namespace harmonia

// SPDX-License-Identifier: Apache-2.0
// Replays the CEL fuzzer's seed corpus (fuzz/corpus/cel) through the fuzz target as a plain test, so the
// target's invariants are checked by every `make test`, not only under libFuzzer.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main() {
  const std::filesystem::path dir = std::filesystem::path(OP_SOURCE_DIR) / "fuzz" / "corpus" / "cel";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    ++count;
  }
  std::cout << count << " corpus inputs replayed\n";
  return count > 0 ? 0 : 1;
}

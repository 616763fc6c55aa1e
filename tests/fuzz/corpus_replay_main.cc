// SPDX-License-Identifier: Apache-2.0
// Replays a fuzz target's seed corpus (fuzz/corpus/<name>/, OP_CORPUS_DIR) through the target as a plain
// program, so the target's invariants are checked by every `make test` with the regular compiler and
// sanitizers, not only under libFuzzer. A target aborts on a broken invariant, which fails the test.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main() {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(OP_CORPUS_DIR)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::cout << "replaying " << entry.path().filename().string() << std::endl;
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    ++count;
  }
  std::cout << count << " corpus inputs replayed from " << OP_CORPUS_DIR << "\n";
  return count > 0 ? 0 : 1;
}

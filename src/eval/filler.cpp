#include "eval/filler.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "common/error.h"
#include "common/mapped_file.h"
#include "eval/rng.h"

namespace harmonia::eval {

namespace fs = std::filesystem;

namespace {

// Word lists and templates written for this project.
const std::vector<std::string> kNames = {"Lily", "Tom",  "Ben",  "Mia",  "Sam",   "Anna", "Max", "Lucy", "Tim", "Sara",
                                         "Jack", "Emma", "Leo",  "Nora", "Finn",  "Ruby", "Otto", "Ivy",  "Hugo", "Zoe"};
const std::vector<std::string> kAnimals = {"a small cat",  "an old dog",     "a brown bird",  "a little frog",
                                           "a quiet fox",  "a fat rabbit",   "a tiny mouse",  "a gray owl",
                                           "a yellow duck", "a slow turtle", "a curious goat", "a sleepy bear"};
const std::vector<std::string> kPlaces = {"the garden",  "the river", "the forest", "the old barn", "the hill",
                                          "the school",  "the kitchen", "the beach", "the library", "the market",
                                          "the bridge",  "the meadow", "the pond",   "the village", "the orchard",
                                          "the harbor",  "the attic",  "the bakery", "the playground", "the field"};
const std::vector<std::string> kObjects = {"a red ball",     "a blue kite",     "a wooden box",     "a shiny stone",
                                           "a long stick",   "a paper boat",    "a warm blanket",   "a green hat",
                                           "a big book",     "a small drum",    "a jar of honey",   "a basket of apples",
                                           "a striped scarf", "a toy train",    "a glass bottle",   "a bag of seeds",
                                           "an old map",     "a bright lantern", "a soft pillow",   "a copper bell"};
const std::vector<std::string> kVerbs = {"found",   "carried", "painted", "lost",   "hid",     "shared",
                                         "cleaned", "dropped", "fixed",   "watched", "wrapped", "borrowed"};
const std::vector<std::string> kTimes = {"In the morning", "After lunch",    "One windy day",  "Later that week",
                                         "When the rain stopped", "Before dinner", "At night",  "On a cold day",
                                         "The next day",   "Every evening",  "Long ago",       "That afternoon"};
const std::vector<std::string> kFeelings = {"happy", "tired",   "proud", "brave", "curious", "calm",
                                            "sleepy", "glad",   "surprised", "shy", "hopeful", "cheerful"};
const std::vector<std::string> kWeather = {"The wind was cold.",
                                           "The sun was warm on the roof.",
                                           "Clouds moved slowly over the hills.",
                                           "Rain fell softly on the windows.",
                                           "The air smelled of pine and wet grass.",
                                           "Leaves fell from the tall trees.",
                                           "Snow covered the quiet road.",
                                           "The sky turned orange and then dark."};

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

std::string sentence(Rng& r) {
  const std::string& n1 = r.choice(kNames);
  std::string n2 = r.choice(kNames);
  if (n2 == n1) n2 = kNames[(std::find(kNames.begin(), kNames.end(), n1) - kNames.begin() + 1) % kNames.size()];
  switch (r.below(10)) {
    case 0: return n1 + " " + r.choice(kVerbs) + " " + r.choice(kObjects) + " near " + r.choice(kPlaces) + ".";
    case 1: return r.choice(kTimes) + ", " + n1 + " walked to " + r.choice(kPlaces) + " with " + r.choice(kAnimals) + ".";
    case 2: return n1 + " felt " + r.choice(kFeelings) + " because " + r.choice(kAnimals) + " was sleeping in " + r.choice(kPlaces) + ".";
    case 3: return r.choice(kWeather);
    case 4: return n1 + " and " + n2 + " talked about " + r.choice(kObjects) + " for a long time.";
    case 5: return cap(r.choice(kAnimals)) + " looked at " + r.choice(kObjects) + " and made a soft sound.";
    case 6: return "There was " + r.choice(kObjects) + " on a table in " + r.choice(kPlaces) + ".";
    case 7: return n1 + " said that " + r.choice(kPlaces) + " was a good place to read.";
    case 8: return r.choice(kTimes) + ", everyone in " + r.choice(kPlaces) + " was " + r.choice(kFeelings) + ".";
    default: return n1 + " wanted to give " + r.choice(kObjects) + " to " + n2 + ".";
  }
}

}  // namespace

std::string synthetic_filler(size_t min_chars, uint64_t seed) {
  Rng r(seed);
  std::string out;
  while (out.size() < min_chars) {
    if (!out.empty()) out += "\n\n";
    const uint64_t n = 4 + r.below(4);
    for (uint64_t i = 0; i < n; ++i) out += (i ? " " : "") + sentence(r);
  }
  return out;
}

std::string haystack_text(const std::string& dir, size_t min_chars) {
  if (dir.empty()) return synthetic_filler(min_chars);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ErrorKind::Io, "--haystack {}: not a folder", dir);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::string once;
  for (const auto& f : files) once += read_file(f);
  if (once.empty()) fail(ErrorKind::Io, "--haystack {}: no non-empty .txt file", dir);
  std::string out;
  while (out.size() < min_chars) out += once;
  return out;
}

}  // namespace harmonia::eval

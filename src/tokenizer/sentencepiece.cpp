// SentencePiece tokenizer.model through the sentencepiece library (kind
// "sentencepiece"): the reference implementation, used as is for encoding.
#include <sentencepiece_processor.h>

#include "common/env.h"
#include "common/error.h"
#include "tokenizer/models.h"

namespace harmonia {
namespace {

using tok::TokType;

class SentencePieceTokenizer final : public tok::VocabTokenizer {
 public:
  SentencePieceTokenizer(tok::Vocab v, std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : VocabTokenizer(std::move(v)), sp_(std::move(sp)) {
    // NOTE: assumes the model's add_dummy_prefix (true for Llama/Mistral); the
    // installed library does not expose the normalizer spec.
    strip_first_space_ = true;
    splitter_.build(tok::added_tokens_from_types(v_));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    std::vector<int> ids;
    // The library never produces control ids from text, so special tokens are
    // split off first; each text fragment gets its own dummy prefix, as in llama.cpp.
    for (const auto& frag : splitter_.split(text, parse_special)) {
      if (frag.id >= 0) {
        out.push_back(frag.id);
        continue;
      }
      ids.clear();
      const auto status = sp_->Encode(frag.text, &ids);
      if (!status.ok())
        fail(ErrorKind::Internal, "{}: sentencepiece encode failed: {}", v_.source, status.ToString());
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    v_.check_id(id);
    const std::string& p = v_.pieces[static_cast<size_t>(id)];
    switch (v_.types[static_cast<size_t>(id)]) {
      case TokType::Byte: {
        const int b = tok::parse_byte_piece(p);
        return b >= 0 ? std::string(1, static_cast<char>(b)) : p;
      }
      case TokType::Control:
      case TokType::Unknown:
        return p;
      default: break;
    }
    std::string out;
    static const std::string kSpace = "\xE2\x96\x81";  // ▁
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += p[i++];
      }
    }
    return out;
  }

  std::string kind() const override { return "sentencepiece"; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  tok::SpecialSplitter splitter_;
};

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_sentencepiece(const std::string& path) {
  if (!file_exists(path)) fail(ErrorKind::Io, "{}: no such file", path);
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->Load(path);
  if (!status.ok())
    fail(ErrorKind::InvalidInput, "{}: not a SentencePiece model: {}", path, status.ToString());
  tok::Vocab v;
  v.source = path;
  const int n = sp->GetPieceSize();
  v.pieces.reserve(static_cast<size_t>(n));
  for (int id = 0; id < n; ++id) {
    v.pieces.push_back(sp->IdToPiece(id));
    v.scores.push_back(sp->GetScore(id));
    TokType t = TokType::Normal;
    if (sp->IsControl(id))
      t = TokType::Control;
    else if (sp->IsUnknown(id))
      t = TokType::Unknown;
    else if (sp->IsByte(id))
      t = TokType::Byte;
    else if (sp->IsUnused(id))
      t = TokType::Unused;
    v.types.push_back(t);
  }
  v.index();
  v.bos = v.valid_or_none(sp->bos_id());
  v.eos = v.valid_or_none(sp->eos_id());
  v.unk = v.valid_or_none(sp->unk_id());
  v.add_bos = v.bos >= 0;  // the .model has no such flag; Llama-family models want BOS
  return std::make_unique<SentencePieceTokenizer>(std::move(v), std::move(sp));
}

}  // namespace harmonia

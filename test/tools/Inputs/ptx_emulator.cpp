// An interpreter for the PTX subset that LLVM's NVPTX backend emits for
// hasten's kernels (see ptx_emulator.h). Instructions are decoded once when
// the module loads; a launch runs every block in turn and, within a block,
// each thread until it finishes or reaches a barrier or a warp-wide
// instruction, where the block's threads meet as on a GPU. Semantics follow
// the PTX ISA (9.7): integer results wrap to the instruction's width, shifts
// clamp their amount, float-to-integer conversions saturate, setp's float
// comparisons are ordered unless spelled with a trailing `u`.
#include "ptx_emulator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

enum class Ty : uint8_t {
  None, Pred, B8, B16, B32, B64, U8, U16, U32, U64, S8, S16, S32, S64,
  F16, BF16, F32, F64, F16x2, BF16x2,
};

struct TypeName {
  const char *name;
  Ty ty;
};
const TypeName kTypes[] = {
    {"pred", Ty::Pred}, {"b8", Ty::B8},     {"b16", Ty::B16},       {"b32", Ty::B32},
    {"b64", Ty::B64},   {"u8", Ty::U8},     {"u16", Ty::U16},       {"u32", Ty::U32},
    {"u64", Ty::U64},   {"s8", Ty::S8},     {"s16", Ty::S16},       {"s32", Ty::S32},
    {"s64", Ty::S64},   {"f16", Ty::F16},   {"bf16", Ty::BF16},     {"f32", Ty::F32},
    {"f64", Ty::F64},   {"f16x2", Ty::F16x2}, {"bf16x2", Ty::BF16x2},
};

Ty parseType(const std::string &s) {
  for (const TypeName &t : kTypes)
    if (s == t.name)
      return t.ty;
  return Ty::None;
}

int bitsOf(Ty t) {
  switch (t) {
  case Ty::Pred: return 1;
  case Ty::B8: case Ty::U8: case Ty::S8: return 8;
  case Ty::B16: case Ty::U16: case Ty::S16: case Ty::F16: case Ty::BF16: return 16;
  case Ty::B32: case Ty::U32: case Ty::S32: case Ty::F32: case Ty::F16x2: case Ty::BF16x2:
    return 32;
  case Ty::B64: case Ty::U64: case Ty::S64: case Ty::F64: return 64;
  case Ty::None: return 0;
  }
  return 0;
}
bool isSigned(Ty t) { return t == Ty::S8 || t == Ty::S16 || t == Ty::S32 || t == Ty::S64; }
bool isFloat(Ty t) { return t == Ty::F16 || t == Ty::BF16 || t == Ty::F32 || t == Ty::F64; }

uint64_t zext(uint64_t v, int bits) { return bits >= 64 ? v : v & ((uint64_t(1) << bits) - 1); }
int64_t sext(uint64_t v, int bits) {
  if (bits >= 64)
    return int64_t(v);
  uint64_t m = uint64_t(1) << (bits - 1);
  v = zext(v, bits);
  return int64_t((v ^ m) - m);
}

float f32Of(uint64_t v) {
  uint32_t b = uint32_t(v);
  float f;
  memcpy(&f, &b, 4);
  return f;
}
uint64_t bitsOfF32(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}
double f64Of(uint64_t v) {
  double d;
  memcpy(&d, &v, 8);
  return d;
}
uint64_t bitsOfF64(double d) {
  uint64_t b;
  memcpy(&b, &d, 8);
  return b;
}
float bf16ToF32(uint64_t v) { return f32Of(uint64_t(uint16_t(v)) << 16); }
uint64_t f32ToBf16(float f) { // round to nearest even, NaN kept quiet
  uint32_t b = uint32_t(bitsOfF32(f));
  if (std::isnan(f))
    return 0x7fc0;
  b += 0x7fff + ((b >> 16) & 1);
  return b >> 16;
}
float f16ToF32(uint64_t v) {
  uint16_t h = uint16_t(v);
  _Float16 x;
  memcpy(&x, &h, 2);
  return float(x);
}
uint64_t f32ToF16(float f) {
  _Float16 x = _Float16(f);
  uint16_t h;
  memcpy(&h, &x, 2);
  return h;
}

// A float operand of any float type, widened to double (exact for all).
double floatOf(uint64_t v, Ty t) {
  switch (t) {
  case Ty::F16: return f16ToF32(v);
  case Ty::BF16: return bf16ToF32(v);
  case Ty::F32: return f32Of(v);
  default: return f64Of(v);
  }
}
// Rounds a value computed exactly in float (f16, bf16, f32 results) or
// double (f64) to the type's bits.
uint64_t floatBits(double d, Ty t) {
  switch (t) {
  case Ty::F16: return f32ToF16(float(d));
  case Ty::BF16: return f32ToBf16(float(d));
  case Ty::F32: return bitsOfF32(float(d));
  default: return bitsOfF64(d);
  }
}

enum class Op : uint8_t {
  Mov, Ld, St, Cvta, CvtaTo, Add, Sub, Mul, Mad, Fma, Div, Rem, Min, Max, Abs, Neg, And, Or,
  Xor, Not, Cnot, Shl, Shr, Selp, Setp, Cvt, Bra, Ret, Exit, Call, BarSync, WarpNop, Shfl,
  Rcp, Sqrt, Rsqrt, Ex2, Lg2, Sin, Cos, Tanh, Popc, Clz, Copysign, Nop,
  Mma, Ldmatrix, // warp-wide matrix instructions (tensor cores)
  CpAsync, CpAsyncCommit, CpAsyncWait, // global-to-shared copies and their groups
};

enum class Space : uint8_t { Generic, Global, Local, Shared, Param, Const };

enum Round : uint8_t { kRoundNone, kRn, kRz, kRm, kRp, kRni, kRzi, kRmi, kRpi };
enum Cmp : uint8_t {
  kEq, kNe, kLt, kLe, kGt, kGe, kLo, kLs, kHi, kHs, kEqu, kNeu, kLtu, kLeu, kGtu, kGeu, kNum,
  kNan, kCmpNone
};
enum BoolOp : uint8_t { kBoolNone, kBoolAnd, kBoolOr, kBoolXor };
enum ShflMode : uint8_t { kUp, kDown, kBfly, kIdx };
enum Flags : uint32_t {
  kLoHalf = 1, kHiHalf = 2, kWide = 4, kNaN = 8, kSat = 16, kTrans = 32, kColMajorA = 64,
  kColMajorB = 128, kShapeM16N8K16 = 256, kShapeM8N8 = 512, kShapeM8N8K4 = 1024,
};
enum Special : uint8_t {
  kTidX, kTidY, kTidZ, kNtidX, kNtidY, kNtidZ, kCtaidX, kCtaidY, kCtaidZ, kNctaidX, kNctaidY,
  kNctaidZ, kLaneid, kWarpid,
};

struct Operand {
  enum Kind : uint8_t { None, Reg, Imm, Special, Addr, Vec, Local, Label, Func, Sink };
  Kind kind = None;
  bool negate = false;    // `!%p`
  bool localBase = false; // an address in the frame's local depot
  uint8_t special = 0;
  int32_t reg = -1;       // the register, or an address's base register
  int64_t value = 0;      // immediate; address offset; label pc; function index
  std::vector<int32_t> regs; // a vector's registers (-1: `_`), or call slots
  std::string symbol;     // a label or function name until resolved
};

struct Inst {
  Op op = Op::Nop;
  Ty type = Ty::None, type2 = Ty::None;
  Space space = Space::Generic;
  uint8_t round = kRoundNone, cmp = kCmpNone, boolOp = kBoolNone, vec = 1, shfl = kIdx;
  uint32_t flags = 0;
  int32_t guard = -1;
  bool guardNeg = false;
  std::vector<Operand> ops;
  int line = 0;
};

struct Function {
  std::string name;
  bool entry = false, external = false, defined = false;
  std::vector<Inst> code;
  int regCount = 0;
  std::vector<std::pair<int, int>> formals; // param-area offset, size
  int retOffset = -1, retSize = 0;
  int paramBytes = 0, localBytes = 0;
  bool collectives = false; // uses bar.sync or warp-wide instructions
  bool calls = false;
};

struct Region {
  uint64_t base, end;
};

struct Module {
  std::vector<Function> functions;
  std::unordered_map<std::string, int> functionIndex;
  std::vector<std::string> lines;
  std::vector<std::unique_ptr<uint8_t[]>> globalStorage;
  std::vector<Region> globals;
  int sharedBytes = 0;
};

// ------------------------------------------------------------------ parsing

struct ParseError {
  std::string message;
};

[[noreturn]] void fail(int line, const char *format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  throw ParseError{"line " + std::to_string(line) + ": " + buffer};
}

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> splitTopLevel(const std::string &s, char separator) {
  std::vector<std::string> parts;
  int depth = 0;
  std::string current;
  for (char c : s) {
    if (c == '[' || c == '{' || c == '(')
      ++depth;
    if (c == ']' || c == '}' || c == ')')
      --depth;
    if (c == separator && depth == 0) {
      parts.push_back(trim(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!trim(current).empty())
    parts.push_back(trim(current));
  return parts;
}

std::vector<std::string> splitDots(const std::string &s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '.') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

bool parseInteger(const std::string &s, int64_t &out) {
  if (s.empty())
    return false;
  const char *p = s.c_str();
  char *end = nullptr;
  if (s[0] == '-')
    out = int64_t(strtoll(p, &end, 0));
  else
    out = int64_t(strtoull(p, &end, 0));
  return *end == 0 || (*end == 'U' && end[1] == 0);
}

// Parses PTX text (comments removed) into functions.
class Parser {
public:
  Parser(Module &m, std::string text) : m(m), text(std::move(text)) {}

  void run() {
    while (skipSpace(), at < text.size()) {
      if (startsWith(".version") || startsWith(".target") || startsWith(".address_size")) {
        readLine();
        continue;
      }
      // A declaration up to `;` or a definition up to its body's `{`.
      int line = lineAt(at);
      size_t end = text.find_first_of(";{", at);
      if (end == std::string::npos)
        fail(line, "unterminated declaration");
      std::string header = text.substr(at, end - at);
      bool body = text[end] == '{';
      at = end + 1;
      std::vector<std::string> words = words_(header);
      auto has = [&](const char *w) {
        return std::find(words.begin(), words.end(), w) != words.end();
      };
      if (has(".func") || has(".entry")) {
        int index = declareFunction(header, line);
        if (body)
          parseBody(m.functions[index], line);
        else if (!m.functions[index].defined)
          m.functions[index].external = true;
      } else if (has(".global") || has(".const") || has(".shared")) {
        if (body) { // an initializer list: read to the `;`
          size_t close = text.find(';', at);
          header += "{" + text.substr(at, close - at);
          at = close + 1;
        }
        declareVariable(header, line);
      } else {
        fail(line, "unsupported module-level statement '%s'", trim(header).c_str());
      }
    }
    for (Function &f : m.functions)
      resolveCalls(f);
    // A function using barriers or warp-wide instructions makes every
    // function that calls it one as well.
    for (bool changed = true; changed;) {
      changed = false;
      for (Function &f : m.functions)
        for (const Inst &in : f.code)
          if (in.op == Op::Call && !f.collectives &&
              m.functions[size_t(in.ops[1].value)].collectives)
            f.collectives = changed = true;
    }
  }

private:
  Module &m;
  std::string text;
  size_t at = 0;
  std::vector<size_t> lineStarts;

  // The current function's names.
  std::unordered_map<std::string, int> registers;
  std::vector<std::map<std::string, int>> paramScopes;
  std::map<std::string, int> labels;
  std::string depotName;
  std::unordered_map<std::string, int> sharedVariables;
  std::unordered_map<std::string, uint64_t> globalVariables;

  bool startsWith(const char *s) const { return text.compare(at, strlen(s), s) == 0; }
  void skipSpace() {
    while (at < text.size() && isspace(static_cast<unsigned char>(text[at])))
      ++at;
  }
  void readLine() {
    size_t end = text.find('\n', at);
    at = end == std::string::npos ? text.size() : end + 1;
  }
  int lineAt(size_t offset) {
    if (lineStarts.empty()) {
      lineStarts.push_back(0);
      for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n')
          lineStarts.push_back(i + 1);
    }
    return int(std::upper_bound(lineStarts.begin(), lineStarts.end(), offset) -
               lineStarts.begin());
  }

  static std::vector<std::string> words_(const std::string &s) {
    std::vector<std::string> out;
    std::string w;
    for (char c : s) {
      if (isspace(static_cast<unsigned char>(c)) || c == '(' || c == ')' || c == ',') {
        if (!w.empty())
          out.push_back(w);
        w.clear();
        if (c == '(' || c == ')' || c == ',')
          out.push_back(std::string(1, c));
      } else {
        w += c;
      }
    }
    if (!w.empty())
      out.push_back(w);
    return out;
  }

  // `.param [.ptr] [.align N] .TYPE name[[N]]`: size and alignment.
  static void paramShape(const std::vector<std::string> &w, size_t i, std::string &name,
                         int &size, int &align, int line) {
    align = 0;
    Ty ty = Ty::None;
    for (; i < w.size(); ++i) {
      if (w[i] == ".ptr" || w[i] == ".param" || w[i] == ".reg" || w[i] == ".global" ||
          w[i] == ".const" || w[i] == ".shared" || w[i] == ".local" || w[i] == ".visible" ||
          w[i] == ".extern" || w[i] == ".weak")
        continue;
      if (w[i] == ".align") {
        align = atoi(w[++i].c_str());
        continue;
      }
      if (w[i][0] == '.') {
        ty = parseType(w[i].substr(1));
        if (ty == Ty::None)
          fail(line, "unsupported type '%s'", w[i].c_str());
        continue;
      }
      break;
    }
    if (i >= w.size() || ty == Ty::None)
      fail(line, "malformed declaration");
    std::string n = w[i];
    int count = 1;
    size_t bracket = n.find('[');
    if (bracket != std::string::npos) {
      count = n[bracket + 1] == ']' ? 0 : atoi(n.c_str() + bracket + 1);
      n = n.substr(0, bracket);
    }
    name = n;
    int bytes = ty == Ty::Pred ? 1 : bitsOf(ty) / 8;
    size = bytes * count;
    align = std::max(align, bytes);
  }

  int functionSlot(const std::string &name) {
    auto it = m.functionIndex.find(name);
    if (it != m.functionIndex.end())
      return it->second;
    m.functions.emplace_back();
    m.functions.back().name = name;
    m.functionIndex[name] = int(m.functions.size() - 1);
    return int(m.functions.size() - 1);
  }

  // `.visible .entry NAME(.param ..., ...)` or `.func (.param .b64 r) NAME(...)`.
  int declareFunction(const std::string &header, int line) {
    std::vector<std::string> w = words_(header);
    size_t i = 0;
    bool entry = false;
    while (i < w.size() && w[i] != ".func" && w[i] != ".entry")
      ++i;
    entry = w[i] == ".entry";
    ++i;
    std::vector<std::vector<std::string>> lists; // parenthesised lists
    std::string name;
    while (i < w.size()) {
      if (w[i] == "(") {
        std::vector<std::string> list;
        for (++i; i < w.size() && w[i] != ")"; ++i)
          list.push_back(w[i]);
        ++i;
        lists.push_back(list);
      } else if (name.empty() && w[i][0] != '.') {
        name = w[i++];
      } else {
        break; // .maxntid and other performance directives
      }
    }
    if (name.empty())
      fail(line, "a function without a name");
    int index = functionSlot(name);
    Function &f = m.functions[size_t(index)];
    f.entry = entry;
    // For .func a list before the name is the return value.
    size_t formalsList = 0;
    if (!entry && lists.size() == 2)
      formalsList = 1;
    f.formals.clear();
    f.paramBytes = 0;
    registers.clear();
    paramScopes.assign(1, {});
    auto declare = [&](const std::vector<std::string> &list, bool isReturn) {
      for (const std::string &decl : splitList(list)) {
        std::vector<std::string> dw = words_(decl);
        std::string pname;
        int size = 0, align = 1;
        paramShape(dw, 0, pname, size, align, line);
        f.paramBytes = (f.paramBytes + align - 1) / align * align;
        paramScopes.back()[pname] = f.paramBytes;
        if (isReturn) {
          f.retOffset = f.paramBytes;
          f.retSize = size;
        } else {
          f.formals.push_back({f.paramBytes, size});
        }
        f.paramBytes += size;
      }
    };
    if (!entry && lists.size() == 2)
      declare(lists[0], true);
    if (formalsList < lists.size())
      declare(lists[formalsList], false);
    return index;
  }

  static std::vector<std::string> splitList(const std::vector<std::string> &list) {
    std::vector<std::string> decls;
    std::string current;
    for (const std::string &w : list) {
      if (w == ",") {
        decls.push_back(current);
        current.clear();
      } else {
        current += (current.empty() ? "" : " ") + w;
      }
    }
    if (!current.empty())
      decls.push_back(current);
    return decls;
  }

  void declareVariable(const std::string &header, int line) {
    std::string decl = header;
    std::string init;
    size_t eq = decl.find('=');
    if (eq != std::string::npos) {
      init = decl.substr(eq + 1);
      decl = decl.substr(0, eq);
    }
    std::vector<std::string> w = words_(decl);
    std::string name;
    int size = 0, align = 1;
    paramShape(w, 0, name, size, align, line);
    bool shared = std::find(w.begin(), w.end(), ".shared") != w.end();
    if (shared) {
      m.sharedBytes = (m.sharedBytes + 15) / 16 * 16;
      sharedVariables[name] = m.sharedBytes;
      m.sharedBytes += size;
      return;
    }
    // Element width from the declared type, for the initializer.
    int element = 1;
    for (const std::string &x : w)
      if (x[0] == '.' && parseType(x.substr(1)) != Ty::None)
        element = std::max(1, bitsOf(parseType(x.substr(1))) / 8);
    std::unique_ptr<uint8_t[]> storage(new uint8_t[size_t(std::max(size, 1))]());
    if (!init.empty()) {
      std::string list = init;
      list.erase(std::remove(list.begin(), list.end(), '{'), list.end());
      list.erase(std::remove(list.begin(), list.end(), '}'), list.end());
      int offset = 0;
      for (const std::string &v : splitTopLevel(list, ',')) {
        int64_t value;
        if (!parseInteger(v, value))
          fail(line, "unsupported initializer '%s'", v.c_str());
        if (offset + element <= size)
          memcpy(storage.get() + offset, &value, size_t(element));
        offset += element;
      }
    }
    uint64_t address = uint64_t(reinterpret_cast<uintptr_t>(storage.get()));
    globalVariables[name] = address;
    m.globals.push_back({address, address + uint64_t(size)});
    m.globalStorage.push_back(std::move(storage));
  }

  // Reads statements up to the `}` that closes the body.
  void parseBody(Function &f, int headerLine) {
    if (f.defined)
      fail(headerLine, "function '%s' defined twice", f.name.c_str());
    f.defined = true;
    f.external = false;
    labels.clear();
    depotName.clear();
    std::unordered_map<std::string, int> localShared;
    int depth = 1;
    while (true) {
      skipSpace();
      if (at >= text.size())
        fail(headerLine, "function '%s' has no closing brace", f.name.c_str());
      int line = lineAt(at);
      char c = text[at];
      if (c == '{') {
        ++at;
        ++depth;
        paramScopes.push_back({});
        continue;
      }
      if (c == '}') {
        ++at;
        if (--depth == 0)
          break;
        paramScopes.pop_back();
        continue;
      }
      // A label: `NAME:`.
      size_t wordEnd = at;
      while (wordEnd < text.size() &&
             (isalnum(static_cast<unsigned char>(text[wordEnd])) ||
              strchr("_$.%", text[wordEnd])))
        ++wordEnd;
      if (wordEnd < text.size() && text[wordEnd] == ':' && wordEnd > at) {
        labels[text.substr(at, wordEnd - at)] = int(f.code.size());
        at = wordEnd + 1;
        continue;
      }
      size_t end = text.find(';', at);
      if (end == std::string::npos)
        fail(line, "statement without ';'");
      std::string statement = trim(text.substr(at, end - at));
      at = end + 1;
      if (statement[0] == '.') {
        declaration(f, statement, line);
        continue;
      }
      f.code.push_back(instruction(f, statement, line));
    }
    f.regCount = int(registers.size());
    // Labels to instruction indices.
    for (Inst &in : f.code)
      for (Operand &o : in.ops)
        if (o.kind == Operand::Label) {
          auto it = labels.find(o.symbol);
          if (it == labels.end())
            fail(in.line, "unknown label '%s'", o.symbol.c_str());
          o.value = it->second;
        }
    (void)localShared;
  }

  void declaration(Function &f, const std::string &statement, int line) {
    std::vector<std::string> w = words_(statement);
    const std::string &kind = w[0];
    if (kind == ".pragma" || kind == ".loc" || kind == ".file")
      return;
    if (kind == ".reg") {
      // `.reg .b32 %r<12>` or `.reg .b64 %SP, %x`
      for (size_t i = 2; i < w.size(); ++i) {
        if (w[i] == ",")
          continue;
        std::string name = w[i];
        size_t lt = name.find('<');
        if (lt != std::string::npos) {
          int count = atoi(name.c_str() + lt + 1);
          std::string base = name.substr(0, lt);
          for (int r = 0; r < count; ++r)
            registers.emplace(base + std::to_string(r), int(registers.size()));
        } else {
          registers.emplace(name, int(registers.size()));
        }
      }
      return;
    }
    std::string name;
    int size = 0, align = 1;
    if (kind == ".local") {
      paramShape(w, 0, name, size, align, line);
      if (!depotName.empty() || f.localBytes)
        fail(line, "more than one local variable in '%s'", f.name.c_str());
      depotName = name;
      f.localBytes = (size + 15) / 16 * 16;
      return;
    }
    if (kind == ".shared") {
      paramShape(w, 0, name, size, align, line);
      m.sharedBytes = (m.sharedBytes + 15) / 16 * 16;
      sharedVariables[name] = m.sharedBytes;
      m.sharedBytes += size;
      return;
    }
    if (kind == ".param") { // a call's argument or result slot
      paramShape(w, 0, name, size, align, line);
      f.paramBytes = (f.paramBytes + align - 1) / align * align;
      paramScopes.back()[name] = f.paramBytes;
      f.paramBytes += size;
      return;
    }
    fail(line, "unsupported declaration '%s'", statement.c_str());
  }

  int registerOf(const std::string &name, int line) {
    auto it = registers.find(name);
    if (it == registers.end())
      fail(line, "unknown register '%s'", name.c_str());
    return it->second;
  }

  int paramOffset(const std::string &name) {
    for (auto s = paramScopes.rbegin(); s != paramScopes.rend(); ++s) {
      auto it = s->find(name);
      if (it != s->end())
        return it->second;
    }
    return -1;
  }

  Operand operand(const std::string &text_, int line, Space &addressSpace) {
    std::string s = trim(text_);
    Operand o;
    if (s.empty())
      fail(line, "empty operand");
    if (s[0] == '[') {
      o.kind = Operand::Addr;
      std::string inner = trim(s.substr(1, s.size() - 2));
      std::string base = inner;
      int64_t offset = 0;
      size_t plus = inner.find('+');
      if (plus != std::string::npos) {
        base = trim(inner.substr(0, plus));
        if (!parseInteger(trim(inner.substr(plus + 1)), offset))
          fail(line, "unsupported address '%s'", s.c_str());
      }
      o.value = offset;
      if (base[0] == '%') {
        o.reg = registerOf(base, line);
        return o;
      }
      int64_t absolute;
      if (parseInteger(base, absolute)) {
        o.value += absolute;
        return o;
      }
      int param = paramOffset(base);
      if (param >= 0) {
        o.value += param;
        addressSpace = Space::Param;
        return o;
      }
      if (base == depotName) {
        o.localBase = true;
        return o;
      }
      if (sharedVariables.count(base)) {
        o.value += sharedVariables[base];
        return o;
      }
      if (globalVariables.count(base)) {
        o.value += int64_t(globalVariables[base]);
        return o;
      }
      fail(line, "unknown address base '%s'", base.c_str());
    }
    if (s[0] == '{') {
      o.kind = Operand::Vec;
      for (const std::string &r : splitTopLevel(s.substr(1, s.size() - 2), ','))
        o.regs.push_back(r == "_" ? -1 : registerOf(r, line));
      return o;
    }
    if (s[0] == '(') {
      o.kind = Operand::Vec; // a call's parameter slots
      for (const std::string &p : splitTopLevel(s.substr(1, s.size() - 2), ',')) {
        int offset = paramOffset(p);
        if (offset < 0)
          fail(line, "unknown call parameter '%s'", p.c_str());
        o.regs.push_back(offset);
      }
      return o;
    }
    if (s[0] == '!') {
      o = operand(s.substr(1), line, addressSpace);
      o.negate = true;
      return o;
    }
    if (s.find('|') != std::string::npos) { // setp's two results
      o.kind = Operand::Vec;
      for (const std::string &r : splitTopLevel(s, '|'))
        o.regs.push_back(registerOf(r, line));
      return o;
    }
    if (s[0] == '%') {
      static const std::pair<const char *, Special> specials[] = {
          {"%tid.x", kTidX},     {"%tid.y", kTidY},       {"%tid.z", kTidZ},
          {"%ntid.x", kNtidX},   {"%ntid.y", kNtidY},     {"%ntid.z", kNtidZ},
          {"%ctaid.x", kCtaidX}, {"%ctaid.y", kCtaidY},   {"%ctaid.z", kCtaidZ},
          {"%nctaid.x", kNctaidX}, {"%nctaid.y", kNctaidY}, {"%nctaid.z", kNctaidZ},
          {"%laneid", kLaneid},  {"%warpid", kWarpid},
      };
      for (const auto &sp : specials)
        if (s == sp.first) {
          o.kind = Operand::Special;
          o.special = sp.second;
          return o;
        }
      o.kind = Operand::Reg;
      o.reg = registerOf(s, line);
      return o;
    }
    if (s == "_") {
      o.kind = Operand::Sink;
      return o;
    }
    o.kind = Operand::Imm;
    if (s.size() == 10 && (s.compare(0, 2, "0f") == 0 || s.compare(0, 2, "0F") == 0)) {
      o.value = int64_t(strtoull(s.c_str() + 2, nullptr, 16));
      return o;
    }
    if (s.size() == 18 && (s.compare(0, 2, "0d") == 0 || s.compare(0, 2, "0D") == 0)) {
      o.value = int64_t(strtoull(s.c_str() + 2, nullptr, 16));
      return o;
    }
    if (parseInteger(s, o.value))
      return o;
    // A symbol: a label, function, the local depot, a shared or global
    // variable.
    if (s == depotName) {
      o.kind = Operand::Local;
      o.value = 0;
      return o;
    }
    if (sharedVariables.count(s)) {
      o.value = sharedVariables[s];
      return o;
    }
    if (globalVariables.count(s)) {
      o.value = int64_t(globalVariables[s]);
      return o;
    }
    o.kind = Operand::Label; // or a function, decided by the instruction
    o.symbol = s;
    return o;
  }

  Inst instruction(Function &f, const std::string &statement, int line) {
    Inst in;
    in.line = line;
    std::string s = statement;
    if (s[0] == '@') {
      size_t space = s.find_first_of(" \t\r\n");
      std::string guard = s.substr(1, space - 1);
      if (guard[0] == '!') {
        in.guardNeg = true;
        guard = guard.substr(1);
      }
      in.guard = registerOf(guard, line);
      s = trim(s.substr(space));
    }
    size_t space = s.find_first_of(" \t\r\n");
    std::string opcode = s.substr(0, space);
    std::string rest = space == std::string::npos ? "" : trim(s.substr(space));
    std::vector<std::string> parts = splitDots(opcode);
    const std::string &name = parts[0];
    static const std::unordered_map<std::string, Op> ops = {
        {"mov", Op::Mov},   {"ld", Op::Ld},       {"st", Op::St},     {"cvta", Op::Cvta},
        {"add", Op::Add},   {"sub", Op::Sub},     {"mul", Op::Mul},   {"mad", Op::Mad},
        {"fma", Op::Fma},   {"div", Op::Div},     {"rem", Op::Rem},   {"min", Op::Min},
        {"max", Op::Max},   {"abs", Op::Abs},     {"neg", Op::Neg},   {"and", Op::And},
        {"or", Op::Or},     {"xor", Op::Xor},     {"not", Op::Not},   {"cnot", Op::Cnot},
        {"shl", Op::Shl},   {"shr", Op::Shr},     {"selp", Op::Selp}, {"setp", Op::Setp},
        {"cvt", Op::Cvt},   {"bra", Op::Bra},     {"ret", Op::Ret},   {"exit", Op::Exit},
        {"call", Op::Call}, {"bar", Op::BarSync}, {"barrier", Op::BarSync},
        {"shfl", Op::Shfl}, {"rcp", Op::Rcp},     {"sqrt", Op::Sqrt}, {"rsqrt", Op::Rsqrt},
        {"ex2", Op::Ex2},   {"lg2", Op::Lg2},     {"sin", Op::Sin},   {"cos", Op::Cos},
        {"tanh", Op::Tanh}, {"popc", Op::Popc},   {"clz", Op::Clz},   {"membar", Op::Nop},
        {"fence", Op::Nop}, {"copysign", Op::Copysign}, {"mma", Op::Mma},
        {"ldmatrix", Op::Ldmatrix}, {"cp", Op::CpAsync},
    };
    auto it = ops.find(name);
    if (it == ops.end())
      fail(line, "unsupported instruction '%s'", opcode.c_str());
    in.op = it->second;
    static const std::unordered_map<std::string, uint8_t> rounds = {
        {"rn", kRn}, {"rz", kRz}, {"rm", kRm}, {"rp", kRp},
        {"rni", kRni}, {"rzi", kRzi}, {"rmi", kRmi}, {"rpi", kRpi}};
    static const std::unordered_map<std::string, uint8_t> cmps = {
        {"eq", kEq},   {"ne", kNe},   {"lt", kLt},   {"le", kLe},   {"gt", kGt},
        {"ge", kGe},   {"lo", kLo},   {"ls", kLs},   {"hi", kHi},   {"hs", kHs},
        {"equ", kEqu}, {"neu", kNeu}, {"ltu", kLtu}, {"leu", kLeu}, {"gtu", kGtu},
        {"geu", kGeu}, {"num", kNum}, {"nan", kNan}};
    std::vector<Ty> mmaTypes;          // mma's D, A, B and C types, in that order
    std::vector<std::string> layouts; // mma's A and B layouts
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string &p = parts[i];
      Ty ty = parseType(p);
      if (ty != Ty::None && in.op == Op::Mma) {
        mmaTypes.push_back(ty);
        continue;
      }
      if (ty != Ty::None) {
        if (in.type == Ty::None)
          in.type = ty;
        else
          in.type2 = ty;
        continue;
      }
      if (rounds.count(p)) {
        in.round = rounds.at(p);
        continue;
      }
      if (in.op == Op::Setp && cmps.count(p) && in.cmp == kCmpNone) {
        in.cmp = cmps.at(p);
        continue;
      }
      if (in.op == Op::Setp && (p == "and" || p == "or" || p == "xor")) {
        in.boolOp = p == "and" ? kBoolAnd : p == "or" ? kBoolOr : kBoolXor;
        continue;
      }
      if (p == "lo") { in.flags |= kLoHalf; continue; }
      if (p == "hi") {
        // `hi` is also an unsigned comparison for setp, handled above.
        in.flags |= kHiHalf;
        continue;
      }
      if (p == "wide") { in.flags |= kWide; continue; }
      if (p == "NaN") { in.flags |= kNaN; continue; }
      if (p == "sat") { in.flags |= kSat; continue; }
      if (p == "v2") { in.vec = 2; continue; }
      if (p == "v4") { in.vec = 4; continue; }
      if (p == "global") { in.space = Space::Global; continue; }
      if (p == "local") { in.space = Space::Local; continue; }
      if (p == "shared") { in.space = Space::Shared; continue; }
      if (p == "param") { in.space = Space::Param; continue; }
      if (p == "const") { in.space = Space::Const; continue; }
      if (p == "to" && in.op == Op::Cvta) { in.op = Op::CvtaTo; continue; }
      if (in.op == Op::Shfl && (p == "up" || p == "down" || p == "bfly" || p == "idx")) {
        in.shfl = p == "up" ? kUp : p == "down" ? kDown : p == "bfly" ? kBfly : kIdx;
        continue;
      }
      if (in.op == Op::Mma && p.size() > 1 && p[0] == 'm' && isdigit((unsigned char)p[1])) {
        if (p == "m16n8k16") // other shapes: refused below
          in.flags |= kShapeM16N8K16;
        if (p == "m8n8k4")
          in.flags |= kShapeM8N8K4;
        continue;
      }
      if (in.op == Op::Mma && (p == "row" || p == "col")) {
        layouts.push_back(p);
        continue;
      }
      if (in.op == Op::CpAsync || in.op == Op::CpAsyncCommit || in.op == Op::CpAsyncWait) {
        // cp.async.{ca,cg}.shared.global d, s, cp-size{, src-size};
        // cp.async.commit_group; cp.async.wait_group N; cp.async.wait_all.
        if (p == "async" || p == "ca" || p == "cg" || p == "shared" || p == "global")
          continue;
        if (p == "commit_group") { in.op = Op::CpAsyncCommit; continue; }
        if (p == "wait_group") { in.op = Op::CpAsyncWait; continue; }
        if (p == "wait_all") { in.op = Op::CpAsyncWait; in.flags |= kWide; continue; }
        fail(line, "unsupported modifier '.%s' in '%s'", p.c_str(), opcode.c_str());
      }
      if (in.op == Op::Ldmatrix && p == "m8n8") { in.flags |= kShapeM8N8; continue; }
      if (in.op == Op::Ldmatrix && (p == "x1" || p == "x2" || p == "x4")) {
        in.vec = uint8_t(p[1] - '0');
        continue;
      }
      if (in.op == Op::Ldmatrix && p == "trans") { in.flags |= kTrans; continue; }
      if (in.op == Op::BarSync && p == "warp") {
        in.op = Op::WarpNop; // lanes of a warp run in lockstep here
        continue;
      }
      // Modifiers with no effect on results here.
      static const char *const ignored[] = {
          "uni", "approx", "ftz", "full", "nc", "volatile", "relaxed", "acquire", "release",
          "sys", "gpu", "cta", "sync", "aligned", "u", "ca", "cg", "cs", "lu", "cv", "wb",
          "wt", "ptr", "sc", "acq_rel", "noftz"};
      bool known = false;
      for (const char *g : ignored)
        known |= p == g;
      if (!known)
        fail(line, "unsupported modifier '.%s' in '%s'", p.c_str(), opcode.c_str());
    }
    if (in.op == Op::Cvta && in.space == Space::Generic)
      fail(line, "cvta without a state space");
    if (in.op == Op::Setp && in.cmp == kCmpNone)
      fail(line, "setp without a comparison");
    if (in.op == Op::Mad && isFloat(in.type))
      in.op = Op::Fma;
    if (in.op == Op::Mma) {
      // The forms hasten's attention kernels use (PTX ISA 9.7.14.5.1 and
      // 9.7.14.5.8): m16n8k16.row.col with bf16 or f16 operands, and
      // Volta's m8n8k4 with f16 operands in either layout, f32 accumulators.
      bool half = mmaTypes.size() == 4 && mmaTypes[1] == mmaTypes[2] &&
                  (mmaTypes[1] == Ty::BF16 || mmaTypes[1] == Ty::F16);
      bool ampere = (in.flags & kShapeM16N8K16) && layouts.size() == 2 && layouts[0] == "row" &&
                    layouts[1] == "col";
      bool volta = (in.flags & kShapeM8N8K4) && layouts.size() == 2 && half &&
                   mmaTypes[1] == Ty::F16;
      if (!(ampere || volta) || !half || mmaTypes[0] != Ty::F32 || mmaTypes[3] != Ty::F32)
        fail(line,
             "unsupported mma form '%s' (m16n8k16.row.col.f32.{bf16,f16}.f32 and "
             "m8n8k4.{row,col}.{row,col}.f32.f16.f16.f32 only)",
             opcode.c_str());
      if (volta && layouts[0] == "col")
        in.flags |= kColMajorA;
      if (volta && layouts[1] == "col")
        in.flags |= kColMajorB;
      in.type = mmaTypes[1];
      in.type2 = Ty::F32;
    }
    if (in.op == Op::Ldmatrix && (!(in.flags & kShapeM8N8) || in.type != Ty::B16 ||
                                  (in.space != Space::Shared && in.space != Space::Generic)))
      fail(line, "unsupported ldmatrix form '%s' (m8n8 .x1/.x2/.x4 of .b16 only)",
           opcode.c_str());
    if (in.op == Op::BarSync || in.op == Op::Shfl || in.op == Op::Mma || in.op == Op::Ldmatrix)
      f.collectives = true;
    if (in.op == Op::Call) {
      // call[.uni] (ret), name, (args)  |  call[.uni] name, (args)
      std::vector<std::string> list = splitTopLevel(rest, ',');
      Operand ret, fn, args;
      size_t k = 0;
      Space ignore;
      if (!list.empty() && list[0][0] == '(')
        ret = operand(list[k++], line, ignore);
      if (k >= list.size())
        fail(line, "call without a target");
      fn.kind = Operand::Func;
      fn.symbol = list[k++];
      if (k < list.size())
        args = operand(list[k++], line, ignore);
      in.ops = {ret, fn, args};
      f.calls = true;
      return in;
    }
    for (const std::string &o : splitTopLevel(rest, ',')) {
      Space addressSpace = Space::Generic;
      in.ops.push_back(operand(o, line, addressSpace));
      if (addressSpace == Space::Param && in.space == Space::Generic)
        in.space = Space::Param; // `ld.b64 r, [param]` in a callee
    }
    if ((in.op == Op::Ld || in.op == Op::St) &&
        (in.ops.size() != 2 || in.ops[in.op == Op::Ld ? 1 : 0].kind != Operand::Addr))
      fail(line, "malformed memory access");
    auto vectorOf = [&](size_t i, size_t n) {
      return in.ops.size() > i && in.ops[i].kind == Operand::Vec && in.ops[i].regs.size() == n &&
             std::find(in.ops[i].regs.begin(), in.ops[i].regs.end(), -1) == in.ops[i].regs.end();
    };
    if (in.op == Op::Mma && (in.flags & kShapeM16N8K16) &&
        (in.ops.size() != 4 || !vectorOf(0, 4) || !vectorOf(1, 4) || !vectorOf(2, 2) ||
         !vectorOf(3, 4)))
      fail(line, "malformed mma operands (expected {d x4}, {a x4}, {b x2}, {c x4})");
    if (in.op == Op::Mma && (in.flags & kShapeM8N8K4) &&
        (in.ops.size() != 4 || !vectorOf(0, 8) || !vectorOf(1, 2) || !vectorOf(2, 2) ||
         !vectorOf(3, 8)))
      fail(line, "malformed mma operands (expected {d x8}, {a x2}, {b x2}, {c x8})");
    if (in.op == Op::CpAsync &&
        (opcode.find(".async") == std::string::npos || in.ops.size() < 3 || in.ops.size() > 4 ||
         in.ops[0].kind != Operand::Addr || in.ops[1].kind != Operand::Addr ||
         in.ops[2].kind != Operand::Imm ||
         (in.ops[2].value != 4 && in.ops[2].value != 8 && in.ops[2].value != 16)))
      fail(line, "malformed cp.async (expected [shared], [global], 4|8|16{, src-size})");
    if (in.op == Op::CpAsyncWait && !(in.flags & kWide) &&
        (in.ops.size() != 1 || in.ops[0].kind != Operand::Imm))
      fail(line, "cp.async.wait_group takes an immediate group count");
    if (in.op == Op::Ldmatrix &&
        (in.ops.size() != 2 || !vectorOf(0, in.vec) || in.ops[1].kind != Operand::Addr))
      fail(line, "malformed ldmatrix operands (expected {r x%d}, [address])", int(in.vec));
    return in;
  }

  void resolveCalls(Function &f) {
    for (Inst &in : f.code)
      if (in.op == Op::Call) {
        auto it = m.functionIndex.find(in.ops[1].symbol);
        if (it == m.functionIndex.end())
          fail(in.line, "call of undeclared function '%s'", in.ops[1].symbol.c_str());
        in.ops[1].value = it->second;
      }
  }
};

std::string stripComments(const std::string &ptx) {
  std::string out = ptx;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '"') { // strings (`.pragma "nounroll"`) hold no comments
      size_t close = out.find('"', i + 1);
      if (close == std::string::npos)
        break;
      i = close;
      continue;
    }
    if (out[i] == '/' && out[i + 1] == '/') {
      while (i < out.size() && out[i] != '\n')
        out[i++] = ' ';
    } else if (out[i] == '/' && out[i + 1] == '*') {
      while (i + 1 < out.size() && !(out[i] == '*' && out[i + 1] == '/')) {
        if (out[i] != '\n')
          out[i] = ' ';
        ++i;
      }
      if (i + 1 < out.size())
        out[i] = out[i + 1] = ' ';
    }
  }
  return out;
}

// ---------------------------------------------------------------- execution

struct Frame {
  const Function *fn;
  int pc = 0;
  std::vector<uint64_t> regs;
  std::vector<uint8_t> params;
  uint64_t localBase = 0; // local-space address of this frame's depot
  int resultSlot = -1;    // the caller's slot for our return value
};

enum class State : uint8_t { Running, AtBarrier, AtWarp, Done };

// A cp.async in flight: its bytes land when a wait covers its group.
struct PendingCopy {
  uint8_t *dst;
  const uint8_t *src;
  unsigned bytes, sourceBytes;
  uint64_t group;
};

struct Thread {
  unsigned tid[3];
  unsigned linear;
  std::vector<Frame> frames;
  uint8_t *local = nullptr; // this thread's local memory
  uint64_t localTop = 0;
  State state = State::Running;
  std::vector<PendingCopy> copies;
  uint64_t committedGroups = 0;
};

struct LaunchError {
  std::string message;
};

class Launch {
public:
  Launch(Module &m, const Function &kernel, const unsigned grid[3], const unsigned block[3],
         unsigned dynamicShared, void **params, const PtxMemory &memory)
      : m(m), kernel(kernel), memory(memory) {
    for (int i = 0; i < 3; ++i) {
      this->grid[i] = grid[i];
      this->block[i] = block[i];
    }
    for (size_t i = 0; i < memory.count; ++i)
      regions.push_back({memory.bases[i], memory.bases[i] + memory.sizes[i]});
    for (const Region &g : m.globals)
      regions.push_back(g);
    std::sort(regions.begin(), regions.end(),
              [](const Region &a, const Region &b) { return a.base < b.base; });
    launchParams.assign(size_t(kernel.paramBytes), 0);
    for (size_t i = 0; i < kernel.formals.size(); ++i)
      memcpy(launchParams.data() + kernel.formals[i].first, params[i],
             size_t(kernel.formals[i].second));
    shared.assign(size_t(m.sharedBytes) + dynamicShared + 16, 0);
    // Local memory: the kernel's depot plus every function's, a bound for
    // any non-recursive call chain.
    localSize = kernel.localBytes;
    for (const Function &f : m.functions)
      if (&f != &kernel)
        localSize += f.localBytes;
    localSize = (localSize + 15) / 16 * 16;
  }

  void run() {
    unsigned threadsPerBlock = block[0] * block[1] * block[2];
    threads.resize(threadsPerBlock);
    localMemory.assign(size_t(threadsPerBlock) * localSize + 16, 0);
    for (unsigned bz = 0; bz < grid[2]; ++bz)
      for (unsigned by = 0; by < grid[1]; ++by)
        for (unsigned bx = 0; bx < grid[0]; ++bx) {
          ctaid[0] = bx;
          ctaid[1] = by;
          ctaid[2] = bz;
          runBlock();
        }
  }

private:
  Module &m;
  const Function &kernel;
  const PtxMemory &memory;
  unsigned grid[3], block[3], ctaid[3] = {0, 0, 0};
  std::vector<Region> regions;
  size_t lastRegion = 0;
  std::vector<uint8_t> launchParams, shared, localMemory;
  int localSize = 0;
  std::vector<Thread> threads;
  Thread *current = nullptr;

  [[noreturn]] void fault(const Inst &in, const char *format, ...) {
    char buffer[512];
    va_list args;
    va_start(args, format);
    vsnprintf(buffer, sizeof buffer, format, args);
    va_end(args);
    char where[256];
    snprintf(where, sizeof where, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u), line %d",
             kernel.name.c_str(), ctaid[0], ctaid[1], ctaid[2], current->tid[0],
             current->tid[1], current->tid[2], in.line);
    std::string text = in.line > 0 && size_t(in.line) <= m.lines.size()
                           ? trim(m.lines[size_t(in.line) - 1])
                           : std::string();
    throw LaunchError{std::string(where) + " (" + text + "): " + buffer};
  }

  void runBlock() {
    unsigned n = unsigned(threads.size());
    for (unsigned i = 0; i < n; ++i) {
      Thread &t = threads[i];
      t.linear = i;
      t.tid[0] = i % block[0];
      t.tid[1] = (i / block[0]) % block[1];
      t.tid[2] = i / (block[0] * block[1]);
      t.local = localMemory.data() + size_t(i) * size_t(localSize);
      t.localTop = 0;
      t.state = State::Running;
      t.frames.clear();
      t.copies.clear();
      t.committedGroups = 0;
      pushFrame(t, kernel, launchParams.data(), -1);
    }
    std::fill(shared.begin(), shared.end(), 0);
    if (!kernel.collectives) {
      for (Thread &t : threads)
        execute(t);
      return;
    }
    while (true) {
      for (Thread &t : threads)
        if (t.state == State::Running)
          execute(t);
      bool released = false, anyLive = false, allAtBarrier = true;
      for (unsigned w = 0; w < n; w += 32) {
        unsigned end = std::min(n, w + 32);
        const Inst *at = nullptr;
        bool together = true, any = false;
        for (unsigned i = w; i < end; ++i) {
          Thread &t = threads[i];
          if (t.state == State::Done)
            continue;
          anyLive = true;
          if (t.state != State::AtBarrier)
            allAtBarrier = false;
          const Inst *here = &t.frames.back().fn->code[size_t(t.frames.back().pc)];
          if (t.state != State::AtWarp || (at && here != at))
            together = false;
          at = here;
          any = true;
        }
        if (any && together) {
          warpCollective(w, end, *at);
          released = true;
        }
      }
      if (!anyLive)
        return;
      if (released)
        continue;
      if (allAtBarrier) {
        for (Thread &t : threads)
          if (t.state == State::AtBarrier) {
            t.state = State::Running;
            ++t.frames.back().pc;
          }
        continue;
      }
      for (Thread &t : threads)
        if (t.state != State::Done) {
          current = &t;
          fault(t.frames.back().fn->code[size_t(t.frames.back().pc)],
                "threads of the block wait at different barriers or warp instructions");
        }
    }
  }

  void pushFrame(Thread &t, const Function &fn, const uint8_t *args, int resultSlot) {
    Frame f;
    f.fn = &fn;
    f.regs.assign(size_t(fn.regCount), 0);
    f.params.assign(size_t(fn.paramBytes) + 8, 0);
    if (args)
      memcpy(f.params.data(), args, size_t(fn.paramBytes));
    f.localBase = t.localTop;
    t.localTop += uint64_t(fn.localBytes);
    if (t.localTop > uint64_t(localSize))
      fault(fn.code.empty() ? Inst() : fn.code[0], "local memory exhausted (recursion?)");
    f.resultSlot = resultSlot;
    t.frames.push_back(std::move(f));
  }

  uint64_t specialValue(const Thread &t, uint8_t s) const {
    switch (s) {
    case kTidX: return t.tid[0];
    case kTidY: return t.tid[1];
    case kTidZ: return t.tid[2];
    case kNtidX: return block[0];
    case kNtidY: return block[1];
    case kNtidZ: return block[2];
    case kCtaidX: return ctaid[0];
    case kCtaidY: return ctaid[1];
    case kCtaidZ: return ctaid[2];
    case kNctaidX: return grid[0];
    case kNctaidY: return grid[1];
    case kNctaidZ: return grid[2];
    case kLaneid: return t.linear % 32;
    case kWarpid: return t.linear / 32;
    }
    return 0;
  }

  uint64_t value(const Operand &o, const Frame &f, const Thread &t) const {
    uint64_t v = 0;
    switch (o.kind) {
    case Operand::Reg: v = f.regs[size_t(o.reg)]; break;
    case Operand::Imm: v = uint64_t(o.value); break;
    case Operand::Special: v = specialValue(t, o.special); break;
    case Operand::Local: v = f.localBase + uint64_t(o.value); break;
    default: v = 0; break;
    }
    return o.negate ? v ^ 1 : v;
  }

  // The host address of an access, checked against its state space.
  uint8_t *address(const Inst &in, const Operand &o, Frame &f, Thread &t, Space space,
                   uint64_t bytes) {
    uint64_t a = uint64_t(o.value);
    if (o.reg >= 0)
      a += f.regs[size_t(o.reg)];
    if (o.localBase)
      a += f.localBase;
    switch (space) {
    case Space::Param:
      if (a + bytes > f.params.size())
        fault(in, "parameter access at offset %llu outside the parameters",
              (unsigned long long)a);
      return f.params.data() + a;
    case Space::Local:
      if (a + bytes > uint64_t(localSize))
        fault(in, "local access at offset %llu outside local memory", (unsigned long long)a);
      return t.local + a;
    case Space::Shared:
      if (a + bytes > shared.size())
        fault(in, "shared access at offset %llu outside shared memory", (unsigned long long)a);
      return shared.data() + a;
    case Space::Generic: {
      uint64_t local = uint64_t(reinterpret_cast<uintptr_t>(t.local));
      if (a >= local && a + bytes <= local + uint64_t(localSize))
        return reinterpret_cast<uint8_t *>(uintptr_t(a));
      uint64_t sh = uint64_t(reinterpret_cast<uintptr_t>(shared.data()));
      if (a >= sh && a + bytes <= sh + shared.size())
        return reinterpret_cast<uint8_t *>(uintptr_t(a));
      [[fallthrough]];
    }
    case Space::Global:
    case Space::Const:
      if (!inDeviceMemory(a, bytes))
        fault(in, "%s of %llu bytes at %#llx, outside every device allocation",
              in.op == Op::St ? "store" : "load", (unsigned long long)bytes,
              (unsigned long long)a);
      return reinterpret_cast<uint8_t *>(uintptr_t(a));
    }
    return nullptr;
  }

  bool inDeviceMemory(uint64_t a, uint64_t bytes) {
    if (lastRegion < regions.size() && a >= regions[lastRegion].base &&
        a + bytes <= regions[lastRegion].end)
      return true;
    auto it = std::upper_bound(regions.begin(), regions.end(), a,
                               [](uint64_t x, const Region &r) { return x < r.base; });
    if (it == regions.begin())
      return false;
    --it;
    if (a + bytes > it->end)
      return false;
    lastRegion = size_t(it - regions.begin());
    return true;
  }

  static uint64_t load(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    memcpy(&v, p, size_t(bytes));
    return v;
  }

  // A loaded value as the destination register holds it.
  static uint64_t extend(uint64_t v, Ty ty) {
    int bits = bitsOf(ty);
    return isSigned(ty) ? uint64_t(sext(v, bits)) : zext(v, bits);
  }

  static bool compare(const Inst &in, uint64_t a, uint64_t b) {
    Ty ty = in.type;
    int bits = bitsOf(ty);
    if (isFloat(ty)) {
      double x = floatOf(a, ty), y = floatOf(b, ty);
      bool unordered = std::isnan(x) || std::isnan(y);
      switch (in.cmp) {
      case kEq: return !unordered && x == y;
      case kNe: return !unordered && x != y;
      case kLt: return !unordered && x < y;
      case kLe: return !unordered && x <= y;
      case kGt: return !unordered && x > y;
      case kGe: return !unordered && x >= y;
      case kEqu: return unordered || x == y;
      case kNeu: return unordered || x != y;
      case kLtu: return unordered || x < y;
      case kLeu: return unordered || x <= y;
      case kGtu: return unordered || x > y;
      case kGeu: return unordered || x >= y;
      case kNum: return !unordered;
      case kNan: return unordered;
      default: return false;
      }
    }
    if (ty == Ty::Pred) {
      a &= 1;
      b &= 1;
    }
    uint64_t ua = zext(a, bits), ub = zext(b, bits);
    int64_t sa = sext(a, bits), sb = sext(b, bits);
    bool s = isSigned(ty);
    switch (in.cmp) {
    case kEq: return ua == ub;
    case kNe: return ua != ub;
    case kLt: return s ? sa < sb : ua < ub;
    case kLe: return s ? sa <= sb : ua <= ub;
    case kGt: return s ? sa > sb : ua > ub;
    case kGe: return s ? sa >= sb : ua >= ub;
    case kLo: return ua < ub;
    case kLs: return ua <= ub;
    case kHi: return ua > ub;
    case kHs: return ua >= ub;
    default: return false;
    }
  }

  static double roundInteger(double x, uint8_t round) {
    switch (round) {
    case kRni: case kRn: return std::nearbyint(x);
    case kRmi: case kRm: return std::floor(x);
    case kRpi: case kRp: return std::ceil(x);
    default: return std::trunc(x);
    }
  }

  static uint64_t convert(const Inst &in, uint64_t v) {
    Ty to = in.type, from = in.type2;
    int toBits = bitsOf(to);
    if (isFloat(from) && isFloat(to)) {
      double x = floatOf(v, from);
      if (in.round >= kRni && !std::isnan(x) && !std::isinf(x))
        x = roundInteger(x, in.round);
      if (to == Ty::F32 && from == Ty::F64) {
        float r = float(x); // rn; directed roundings are not used here
        return bitsOfF32(r);
      }
      return floatBits(to == Ty::F64 ? x : double(float(x)), to);
    }
    if (isFloat(from)) { // saturating float-to-integer
      double x = floatOf(v, from);
      if (std::isnan(x))
        return 0;
      x = roundInteger(x, in.round);
      if (isSigned(to)) {
        double lo = -std::ldexp(1.0, toBits - 1), hi = std::ldexp(1.0, toBits - 1) - 1;
        x = std::min(std::max(x, lo), hi);
        return zext(uint64_t(int64_t(x)), toBits);
      }
      double hi = std::ldexp(1.0, toBits) - 1;
      x = std::min(std::max(x, 0.0), hi);
      return zext(x >= 9223372036854775808.0 ? uint64_t(x - 9223372036854775808.0) |
                                                   (uint64_t(1) << 63)
                                             : uint64_t(x),
                  toBits);
    }
    if (isFloat(to)) { // integer to float, rounded to nearest
      int fromBits = bitsOf(from);
      if (to == Ty::F64)
        return isSigned(from) ? bitsOfF64(double(sext(v, fromBits)))
                              : bitsOfF64(double(zext(v, fromBits)));
      float r = isSigned(from) ? float(sext(v, fromBits)) : float(zext(v, fromBits));
      return floatBits(double(r), to);
    }
    // Integer to integer: extend from the source type, wrap to the
    // destination (or clamp with .sat).
    int fromBits = bitsOf(from);
    uint64_t x = isSigned(from) ? uint64_t(sext(v, fromBits)) : zext(v, fromBits);
    if (in.flags & kSat) {
      if (isSigned(to)) {
        int64_t lo = -(int64_t(1) << (toBits - 1)), hi = (int64_t(1) << (toBits - 1)) - 1;
        int64_t y = isSigned(from) ? int64_t(x) : int64_t(std::min<uint64_t>(x, uint64_t(hi)));
        return zext(uint64_t(std::min(std::max(y, lo), hi)), toBits);
      }
      uint64_t hi = toBits >= 64 ? ~uint64_t(0) : (uint64_t(1) << toBits) - 1;
      if (isSigned(from) && int64_t(x) < 0)
        return 0;
      return std::min(x, hi);
    }
    return isSigned(to) ? zext(x, toBits) : zext(x, toBits);
  }

  uint64_t arithmetic(const Inst &in, uint64_t a, uint64_t b, uint64_t c) {
    Ty ty = in.type;
    int bits = bitsOf(ty);
    if (isFloat(ty)) {
      double x = floatOf(a, ty), y = floatOf(b, ty);
      if (ty == Ty::F64) {
        switch (in.op) {
        case Op::Add: return bitsOfF64(x + y);
        case Op::Sub: return bitsOfF64(x - y);
        case Op::Mul: return bitsOfF64(x * y);
        case Op::Div: return bitsOfF64(x / y);
        case Op::Fma: return bitsOfF64(std::fma(x, y, f64Of(c)));
        default: break;
        }
      }
      float fx = float(x), fy = float(y);
      switch (in.op) {
      case Op::Add: return floatBits(double(fx + fy), ty);
      case Op::Sub: return floatBits(double(fx - fy), ty);
      case Op::Mul: return floatBits(double(fx * fy), ty);
      case Op::Div: return floatBits(double(fx / fy), ty);
      case Op::Fma: return floatBits(double(std::fma(fx, fy, float(floatOf(c, ty)))), ty);
      case Op::Min:
      case Op::Max: {
        bool nx = std::isnan(x), ny = std::isnan(y);
        if (nx || ny) {
          if ((in.flags & kNaN) || (nx && ny))
            return floatBits(double(NAN), ty);
          return floatBits(nx ? y : x, ty);
        }
        if (x == 0 && y == 0) // -0 < +0 for min and max
          return floatBits(in.op == Op::Min ? (std::signbit(x) ? x : y)
                                            : (std::signbit(x) ? y : x),
                           ty);
        return floatBits(in.op == Op::Min ? std::min(x, y) : std::max(x, y), ty);
      }
      case Op::Copysign: return floatBits(std::copysign(y, x), ty);
      default: fault(in, "unsupported float operation");
      }
    }
    uint64_t ua = zext(a, bits), ub = zext(b, bits);
    int64_t sa = sext(a, bits), sb = sext(b, bits);
    bool s = isSigned(ty);
    switch (in.op) {
    case Op::Add: return zext(ua + ub, bits);
    case Op::Sub: return zext(ua - ub, bits);
    case Op::Mul:
    case Op::Mad: {
      uint64_t r;
      if (in.flags & kWide) {
        r = s ? uint64_t(sa * sb) : ua * ub; // 32x32 -> 64 (or 16x16 -> 32)
        r = zext(r, bits * 2);
      } else if (in.flags & kHiHalf) {
        if (s)
          r = uint64_t((__int128(sa) * __int128(sb)) >> bits);
        else
          r = uint64_t((unsigned __int128)(ua) * (unsigned __int128)(ub) >> bits);
        r = zext(r, bits);
      } else {
        r = zext(ua * ub, bits);
      }
      if (in.op == Op::Mad)
        r = zext(r + c, (in.flags & kWide) ? bits * 2 : bits);
      return r;
    }
    case Op::Div:
      if (ub == 0)
        return zext(~uint64_t(0), bits);
      if (s) {
        if (sb == -1)
          return zext(uint64_t(0) - ua, bits);
        return zext(uint64_t(sa / sb), bits);
      }
      return ua / ub;
    case Op::Rem:
      if (ub == 0)
        return ua;
      if (s) {
        if (sb == -1)
          return 0;
        return zext(uint64_t(sa % sb), bits);
      }
      return ua % ub;
    case Op::Min: return s ? zext(uint64_t(std::min(sa, sb)), bits) : std::min(ua, ub);
    case Op::Max: return s ? zext(uint64_t(std::max(sa, sb)), bits) : std::max(ua, ub);
    case Op::And: return ty == Ty::Pred ? (a & b & 1) : (ua & ub);
    case Op::Or: return ty == Ty::Pred ? ((a | b) & 1) : (ua | ub);
    case Op::Xor: return ty == Ty::Pred ? ((a ^ b) & 1) : (ua ^ ub);
    case Op::Shl: {
      uint64_t amount = zext(b, 32);
      return amount >= uint64_t(bits) ? 0 : zext(ua << amount, bits);
    }
    case Op::Shr: {
      uint64_t amount = zext(b, 32);
      if (s)
        return zext(uint64_t(sa >> std::min<uint64_t>(amount, uint64_t(bits - 1))), bits);
      return amount >= uint64_t(bits) ? 0 : ua >> amount;
    }
    default: fault(in, "unsupported integer operation");
    }
  }

  uint64_t unary(const Inst &in, uint64_t a) {
    Ty ty = in.type;
    int bits = bitsOf(ty);
    if (isFloat(ty)) {
      double x = floatOf(a, ty);
      float f = float(x);
      switch (in.op) {
      case Op::Abs: return floatBits(std::fabs(x), ty);
      case Op::Neg: return floatBits(-x, ty);
      case Op::Rcp: return ty == Ty::F64 ? bitsOfF64(1.0 / x) : floatBits(1.0f / f, ty);
      case Op::Sqrt: return ty == Ty::F64 ? bitsOfF64(std::sqrt(x)) : floatBits(std::sqrt(f), ty);
      case Op::Rsqrt: return floatBits(double(1.0f / std::sqrt(f)), ty);
      case Op::Ex2: return floatBits(double(std::exp2(f)), ty);
      case Op::Lg2: return floatBits(double(std::log2(f)), ty);
      case Op::Sin: return floatBits(double(std::sin(f)), ty);
      case Op::Cos: return floatBits(double(std::cos(f)), ty);
      case Op::Tanh: return floatBits(double(std::tanh(f)), ty);
      default: fault(in, "unsupported float operation");
      }
    }
    switch (in.op) {
    case Op::Abs: return zext(uint64_t(std::llabs(sext(a, bits))), bits);
    case Op::Neg: return zext(uint64_t(0) - a, bits);
    case Op::Not: return ty == Ty::Pred ? (~a & 1) : zext(~a, bits);
    case Op::Cnot: return zext(a, bits) == 0 ? 1 : 0;
    case Op::Popc: return uint64_t(__builtin_popcountll(zext(a, bits)));
    case Op::Clz: {
      uint64_t v = zext(a, bits);
      return v == 0 ? uint64_t(bits) : uint64_t(__builtin_clzll(v) - (64 - bits));
    }
    default: fault(in, "unsupported integer operation");
    }
  }

  void set(Frame &f, const Operand &d, uint64_t v) {
    if (d.kind == Operand::Reg)
      f.regs[size_t(d.reg)] = v;
  }

  // mov, ld and st of a vector `{a, b}`: element width is the type's.
  void execute(Thread &t) {
    current = &t;
    while (true) {
      Frame *f = &t.frames.back();
      const Inst &in = f->fn->code[size_t(f->pc)];
      if (in.guard >= 0 && bool(f->regs[size_t(in.guard)] & 1) == in.guardNeg) {
        ++f->pc;
        continue;
      }
      const std::vector<Operand> &o = in.ops;
      switch (in.op) {
      case Op::Nop:
      case Op::WarpNop:
        break;
      case Op::Mov: {
        int bits = bitsOf(in.type);
        if (o[1].kind == Operand::Vec) { // pack
          int each = bits / int(o[1].regs.size());
          uint64_t v = 0;
          for (size_t i = 0; i < o[1].regs.size(); ++i)
            v |= zext(f->regs[size_t(o[1].regs[i])], each) << (each * int(i));
          set(*f, o[0], v);
        } else if (o[0].kind == Operand::Vec) { // unpack
          uint64_t v = value(o[1], *f, t);
          int each = bits / int(o[0].regs.size());
          for (size_t i = 0; i < o[0].regs.size(); ++i)
            if (o[0].regs[i] >= 0)
              f->regs[size_t(o[0].regs[i])] = zext(v >> (each * int(i)), each);
        } else {
          set(*f, o[0], in.type == Ty::Pred ? value(o[1], *f, t) & 1
                                            : zext(value(o[1], *f, t), bits ? bits : 64));
        }
        break;
      }
      case Op::Ld:
      case Op::St: {
        int bytes = std::max(1, bitsOf(in.type) / 8);
        const Operand &addr = o[in.op == Op::Ld ? 1 : 0];
        const Operand &data = o[in.op == Op::Ld ? 0 : 1];
        uint8_t *p = address(in, addr, *f, t, in.space, uint64_t(bytes * in.vec));
        if (in.op == Op::Ld) {
          if (data.kind == Operand::Vec) {
            for (size_t i = 0; i < data.regs.size(); ++i)
              if (data.regs[i] >= 0)
                f->regs[size_t(data.regs[i])] = extend(load(p + bytes * int(i), bytes), in.type);
          } else {
            set(*f, data, extend(load(p, bytes), in.type));
          }
        } else {
          if (data.kind == Operand::Vec) {
            for (size_t i = 0; i < data.regs.size(); ++i) {
              uint64_t v = data.regs[i] >= 0 ? f->regs[size_t(data.regs[i])] : 0;
              memcpy(p + bytes * int(i), &v, size_t(bytes));
            }
          } else {
            uint64_t v = value(data, *f, t);
            memcpy(p, &v, size_t(bytes));
          }
        }
        break;
      }
      case Op::CpAsync: {
        // The copy lands at the latest point the PTX ISA allows (the wait
        // that covers its group), so that a read before the wait sees the
        // old bytes, as it may on a GPU.
        unsigned bytes = unsigned(o[2].value);
        unsigned sourceBytes = o.size() == 4 ? unsigned(value(o[3], *f, t)) : bytes;
        if (sourceBytes > bytes)
          fault(in, "cp.async source size %u above the copy size %u", sourceBytes, bytes);
        uint8_t *dst = address(in, o[0], *f, t, Space::Shared, bytes);
        if ((dst - shared.data()) % bytes != 0)
          fault(in, "cp.async destination not %u-byte aligned", bytes);
        const uint8_t *src =
            sourceBytes ? address(in, o[1], *f, t, Space::Global, sourceBytes) : nullptr;
        t.copies.push_back({dst, src, bytes, sourceBytes, t.committedGroups});
        break;
      }
      case Op::CpAsyncCommit:
        ++t.committedGroups;
        break;
      case Op::CpAsyncWait: {
        // wait_group N: every group but the newest N committed ones is
        // done; wait_all: everything issued.
        uint64_t keep = in.flags & kWide ? 0 : uint64_t(o[0].value);
        uint64_t done = in.flags & kWide ? ~uint64_t(0)
                        : t.committedGroups > keep ? t.committedGroups - keep
                                                   : 0;
        std::vector<PendingCopy> still;
        for (const PendingCopy &c : t.copies) {
          if (c.group >= done) {
            still.push_back(c);
            continue;
          }
          if (c.sourceBytes)
            memcpy(c.dst, c.src, c.sourceBytes);
          memset(c.dst + c.sourceBytes, 0, c.bytes - c.sourceBytes);
        }
        t.copies.swap(still);
        break;
      }
      case Op::Cvta:
      case Op::CvtaTo: {
        uint64_t v = value(o[1], *f, t);
        uint64_t base = in.space == Space::Local
                            ? uint64_t(reinterpret_cast<uintptr_t>(t.local))
                        : in.space == Space::Shared
                            ? uint64_t(reinterpret_cast<uintptr_t>(shared.data()))
                            : 0;
        set(*f, o[0], in.op == Op::Cvta ? v + base : v - base);
        break;
      }
      case Op::Add: case Op::Sub: case Op::Mul: case Op::Div: case Op::Rem: case Op::Min:
      case Op::Max: case Op::And: case Op::Or: case Op::Xor: case Op::Shl: case Op::Shr:
      case Op::Copysign:
        set(*f, o[0], arithmetic(in, value(o[1], *f, t), value(o[2], *f, t), 0));
        break;
      case Op::Mad:
      case Op::Fma:
        set(*f, o[0], arithmetic(in, value(o[1], *f, t), value(o[2], *f, t),
                                 value(o[3], *f, t)));
        break;
      case Op::Abs: case Op::Neg: case Op::Not: case Op::Cnot: case Op::Popc: case Op::Clz:
      case Op::Rcp: case Op::Sqrt: case Op::Rsqrt: case Op::Ex2: case Op::Lg2: case Op::Sin:
      case Op::Cos: case Op::Tanh:
        set(*f, o[0], unary(in, value(o[1], *f, t)));
        break;
      case Op::Selp:
        set(*f, o[0], (value(o[3], *f, t) & 1) ? zext(value(o[1], *f, t), bitsOf(in.type))
                                               : zext(value(o[2], *f, t), bitsOf(in.type)));
        break;
      case Op::Setp: {
        bool r = compare(in, value(o[1], *f, t), value(o[2], *f, t));
        bool q = !r;
        if (in.boolOp != kBoolNone) {
          bool c = value(o[3], *f, t) & 1;
          auto combine = [&](bool x) {
            return in.boolOp == kBoolAnd ? x && c : in.boolOp == kBoolOr ? x || c : x != c;
          };
          r = combine(r);
          q = combine(q);
        }
        if (o[0].kind == Operand::Vec) {
          f->regs[size_t(o[0].regs[0])] = r;
          f->regs[size_t(o[0].regs[1])] = q;
        } else {
          set(*f, o[0], r);
        }
        break;
      }
      case Op::Cvt:
        if (in.type2 == Ty::None)
          fault(in, "cvt without a source type");
        if (in.type == Ty::F16x2 || in.type == Ty::BF16x2) {
          // cvt.rn.{f16x2,bf16x2}.f32 d, a, b: a's half above b's.
          if (in.type2 != Ty::F32 || o.size() != 3 || in.round != kRn)
            fault(in, "packed cvt other than .rn from two f32");
          Ty half = in.type == Ty::F16x2 ? Ty::F16 : Ty::BF16;
          uint64_t hi = floatBits(f32Of(value(o[1], *f, t)), half);
          uint64_t lo = floatBits(f32Of(value(o[2], *f, t)), half);
          set(*f, o[0], (hi & 0xffff) << 16 | (lo & 0xffff));
          break;
        }
        set(*f, o[0], convert(in, value(o[1], *f, t)));
        break;
      case Op::Bra:
        f->pc = int(o[0].value);
        continue;
      case Op::Exit:
        t.state = State::Done;
        return;
      case Op::Ret: {
        Frame done = std::move(t.frames.back());
        t.frames.pop_back();
        t.localTop = done.localBase;
        if (t.frames.empty()) {
          t.state = State::Done;
          return;
        }
        Frame &caller = t.frames.back();
        if (done.resultSlot >= 0 && done.fn->retOffset >= 0)
          memcpy(caller.params.data() + done.resultSlot,
                 done.params.data() + done.fn->retOffset, size_t(done.fn->retSize));
        ++caller.pc;
        continue;
      }
      case Op::Call: {
        const Function &callee = m.functions[size_t(o[1].value)];
        const std::vector<int32_t> &args = o[2].regs;
        int resultSlot = o[0].regs.empty() ? -1 : o[0].regs[0];
        if (callee.external) {
          uint64_t arg = 0;
          if (!args.empty())
            memcpy(&arg, f->params.data() + args[0], 8);
          uint64_t result = 0;
          if (callee.name == "malloc") {
            void *p = memory.deviceMalloc ? memory.deviceMalloc(size_t(arg)) : nullptr;
            result = uint64_t(reinterpret_cast<uintptr_t>(p));
            if (p) {
              Region r{result, result + arg};
              regions.insert(std::upper_bound(regions.begin(), regions.end(), r,
                                              [](const Region &x, const Region &y) {
                                                return x.base < y.base;
                                              }),
                             r);
              lastRegion = regions.size();
            }
          } else if (callee.name == "free") {
            if (arg) {
              auto it = std::find_if(regions.begin(), regions.end(),
                                     [&](const Region &r) { return r.base == arg; });
              if (it == regions.end())
                fault(in, "free of %#llx, not a device allocation", (unsigned long long)arg);
              regions.erase(it);
              lastRegion = regions.size();
              if (memory.deviceFree)
                memory.deviceFree(reinterpret_cast<void *>(uintptr_t(arg)));
            }
          } else if (callee.name != "vprintf") {
            fault(in, "call of external function '%s'", callee.name.c_str());
          }
          if (resultSlot >= 0)
            memcpy(f->params.data() + resultSlot, &result, 8);
          break;
        }
        if (!callee.defined)
          fault(in, "call of undefined function '%s'", callee.name.c_str());
        // Arguments from the caller's slots to the callee's formals.
        std::vector<uint8_t> packed(size_t(callee.paramBytes) + 8, 0);
        for (size_t i = 0; i < args.size() && i < callee.formals.size(); ++i)
          memcpy(packed.data() + callee.formals[i].first, f->params.data() + args[i],
                 size_t(callee.formals[i].second));
        pushFrame(t, callee, packed.data(), resultSlot);
        continue;
      }
      case Op::BarSync:
        t.state = State::AtBarrier;
        return;
      case Op::Shfl:
      case Op::Mma:
      case Op::Ldmatrix:
        t.state = State::AtWarp;
        return;
      }
      ++t.frames.back().pc;
    }
  }

  // mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.f32 d, a, b, c: D = A B
  // + C over the warp (PTX ISA 9.7.14.5.8, "Matrix Fragments for
  // mma.m16n8k16 with floating point type"). Lane l holds, with g = l / 4
  // and t = l % 4: A (16 x 16, two halves per 32-bit register, the lower
  // half first) a_i at row g + 8 * ((i / 2) % 2), column 2t + i % 2 + 8 * (i
  // / 4); B (16 x 8) b_i at row 2t + i % 2 + 8 * (i / 2), column g; C and D
  // (16 x 8, f32) c_i at row g + 8 * (i / 2), column 2t + i % 2. Products of
  // half-precision operands are exact in f32; the sums are rounded once,
  // from double.
  void mma(unsigned begin, const Inst &in) {
    double a[16][16], b[16][8], c[16][8];
    auto reg = [&](unsigned lane, const Operand &o, unsigned i) {
      return threads[begin + lane].frames.back().regs[size_t(o.regs[i])];
    };
    auto half = [&](uint64_t r, unsigned i) {
      return floatOf((r >> (16 * (i % 2))) & 0xffff, in.type);
    };
    for (unsigned lane = 0; lane < 32; ++lane) {
      unsigned g = lane / 4, t = lane % 4;
      for (unsigned i = 0; i < 8; ++i)
        a[g + 8 * ((i / 2) % 2)][2 * t + i % 2 + 8 * (i / 4)] =
            half(reg(lane, in.ops[1], i / 2), i);
      for (unsigned i = 0; i < 4; ++i)
        b[2 * t + i % 2 + 8 * (i / 2)][g] = half(reg(lane, in.ops[2], i / 2), i);
      for (unsigned i = 0; i < 4; ++i)
        c[g + 8 * (i / 2)][2 * t + i % 2] = f32Of(reg(lane, in.ops[3], i));
    }
    for (unsigned lane = 0; lane < 32; ++lane) {
      unsigned g = lane / 4, t = lane % 4;
      Frame &f = threads[begin + lane].frames.back();
      for (unsigned i = 0; i < 4; ++i) {
        unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
        double sum = c[row][col];
        for (unsigned k = 0; k < 16; ++k)
          sum += a[row][k] * b[k][col];
        f.regs[size_t(in.ops[0].regs[i])] = bitsOfF32(float(sum));
      }
    }
  }

  // mma.sync.aligned.m8n8k4.alayout.blayout.f32.f16.f16.f32 d, a, b, c
  // (PTX ISA 9.7.14.5.1): four independent 8x8x4 products, one per quad
  // pair q (lanes 4q..4q+3, the low group, and 16+4q..16+4q+3, the high
  // group). With l the lane, h = 1 in the high group and r = l % 4: A (8 x
  // 4) a_i at (r + 4h, i) row-major, (i + 4h, r) column-major; B (4 x 8) b_i
  // at (r, i + 4h) row-major, (i, r + 4h) column-major (two halves per
  // register, the lower first); C and D (8 x 8, f32) c_i at row (l & 1) +
  // (i & 2) + 4h, column (i & 4) + (l & 2) + (i & 1).
  void mmaQuadPairs(unsigned begin, const Inst &in) {
    bool colA = in.flags & kColMajorA, colB = in.flags & kColMajorB;
    for (unsigned q = 0; q < 4; ++q) {
      double a[8][4], b[4][8], c[8][8];
      unsigned lanes[8];
      for (unsigned j = 0; j < 8; ++j)
        lanes[j] = (j < 4 ? 4 * q : 16 + 4 * q) + j % 4;
      for (unsigned lane : lanes) {
        const Frame &f = threads[begin + lane].frames.back();
        unsigned h = lane >= 16, r = lane % 4;
        auto half = [&](const Operand &o, unsigned i) {
          return floatOf((f.regs[size_t(o.regs[i / 2])] >> (16 * (i % 2))) & 0xffff, in.type);
        };
        for (unsigned i = 0; i < 4; ++i) {
          (colA ? a[i + 4 * h][r] : a[r + 4 * h][i]) = half(in.ops[1], i);
          (colB ? b[i][r + 4 * h] : b[r][i + 4 * h]) = half(in.ops[2], i);
        }
        for (unsigned i = 0; i < 8; ++i)
          c[(lane & 1) + (i & 2) + 4 * h][(i & 4) + (lane & 2) + (i & 1)] =
              f32Of(f.regs[size_t(in.ops[3].regs[i])]);
      }
      for (unsigned lane : lanes) {
        Frame &f = threads[begin + lane].frames.back();
        unsigned h = lane >= 16;
        for (unsigned i = 0; i < 8; ++i) {
          unsigned row = (lane & 1) + (i & 2) + 4 * h, col = (i & 4) + (lane & 2) + (i & 1);
          double sum = c[row][col];
          for (unsigned k = 0; k < 4; ++k)
            sum += a[row][k] * b[k][col];
          f.regs[size_t(in.ops[0].regs[i])] = bitsOfF32(float(sum));
        }
      }
    }
  }

  // ldmatrix.sync.aligned.m8n8.xN{.trans}.shared.b16 r, [p] (PTX ISA
  // 9.7.14.5.15): lanes 8i..8i+7 give the addresses of matrix i's rows (16
  // bytes each, 16-byte aligned, in shared memory); lane l receives in r_i
  // the elements (g, 2t) and (g, 2t + 1) of matrix i, g = l / 4, t = l % 4,
  // or with .trans (2t, g) and (2t + 1, g), the first in the lower half.
  void ldmatrix(unsigned begin, const Inst &in) {
    unsigned count = in.vec;
    uint16_t rows[4][8][8];
    for (unsigned lane = 0; lane < 8 * count; ++lane) {
      Thread &t = threads[begin + lane];
      current = &t;
      Frame &f = t.frames.back();
      uint8_t *p = address(in, in.ops[1], f, t, in.space, 16);
      uint8_t *sh = shared.data();
      if (p < sh || p + 16 > sh + shared.size())
        fault(in, "ldmatrix row address outside shared memory");
      if ((p - sh) % 16 != 0)
        fault(in, "ldmatrix row address %#llx not 16-byte aligned",
              (unsigned long long)(p - sh));
      memcpy(rows[lane / 8][lane % 8], p, 16);
    }
    for (unsigned lane = 0; lane < 32; ++lane) {
      unsigned g = lane / 4, t = lane % 4;
      Frame &f = threads[begin + lane].frames.back();
      for (unsigned i = 0; i < count; ++i) {
        uint16_t lo = in.flags & kTrans ? rows[i][2 * t][g] : rows[i][g][2 * t];
        uint16_t hi = in.flags & kTrans ? rows[i][2 * t + 1][g] : rows[i][g][2 * t + 1];
        f.regs[size_t(in.ops[0].regs[i])] = uint64_t(lo) | uint64_t(hi) << 16;
      }
    }
  }

  // Runs the warp-wide instruction every live lane of [begin, end) reached.
  void warpCollective(unsigned begin, unsigned end, const Inst &in) {
    if (in.op == Op::Mma || in.op == Op::Ldmatrix) {
      // .aligned: every thread of the warp executes it, none has exited.
      for (unsigned i = begin; i < begin + 32; ++i)
        if (i >= end || threads[i].state == State::Done) {
          current = &threads[begin];
          fault(in, "%s with lane %u of the warp inactive (.aligned needs all 32)",
                in.op == Op::Mma ? "mma" : "ldmatrix", i - begin);
        }
      if (in.op == Op::Mma && (in.flags & kShapeM8N8K4))
        mmaQuadPairs(begin, in);
      else if (in.op == Op::Mma)
        mma(begin, in);
      else
        ldmatrix(begin, in);
      for (unsigned i = begin; i < end; ++i) {
        ++threads[i].frames.back().pc;
        threads[i].state = State::Running;
      }
      return;
    }
    if (in.op != Op::Shfl) {
      current = &threads[begin];
      fault(in, "unsupported warp-wide instruction");
    }
    // shfl.sync.MODE.b32 d[|p], a, b, c, membermask (PTX ISA 9.7.9.6).
    uint64_t source[32] = {0};
    for (unsigned i = begin; i < end; ++i) {
      Thread &t = threads[i];
      if (t.state != State::Done)
        source[i - begin] = zext(value(in.ops[1], t.frames.back(), t), 32);
    }
    for (unsigned i = begin; i < end; ++i) {
      Thread &t = threads[i];
      if (t.state == State::Done)
        continue;
      Frame &f = t.frames.back();
      unsigned lane = i - begin;
      unsigned b = unsigned(value(in.ops[2], f, t)) & 31;
      unsigned c = unsigned(value(in.ops[3], f, t));
      unsigned segmask = (c >> 8) & 31, clamp = c & 31;
      unsigned maxLane = (lane & segmask) | (clamp & ~segmask);
      unsigned minLane = lane & segmask;
      int j = int(lane);
      bool valid = false;
      switch (in.shfl) {
      case kUp: j = int(lane) - int(b); valid = j >= int(maxLane); break;
      case kDown: j = int(lane) + int(b); valid = j <= int(maxLane); break;
      case kBfly: j = int(lane ^ b); valid = j <= int(maxLane); break;
      case kIdx: j = int(minLane | (b & ~segmask)); valid = j <= int(maxLane); break;
      }
      if (!valid || j < 0 || unsigned(j) >= end - begin)
        j = int(lane);
      const Operand &d = in.ops[0];
      if (d.kind == Operand::Vec) {
        f.regs[size_t(d.regs[0])] = source[j];
        f.regs[size_t(d.regs[1])] = valid;
      } else if (d.kind == Operand::Reg) {
        f.regs[size_t(d.reg)] = source[j];
      }
      ++f.pc;
      t.state = State::Running;
    }
  }
};

void copyError(char *error, size_t size, const std::string &message) {
  if (error && size)
    snprintf(error, size, "%s", message.c_str());
}

} // namespace

struct PtxModule {
  Module module;
};

extern "C" PtxModule *ptxLoad(const char *ptx, char *error, size_t errorSize) {
  std::unique_ptr<PtxModule> m(new PtxModule);
  std::string text = stripComments(ptx);
  size_t start = 0;
  std::string source = ptx;
  for (size_t i = 0; i <= source.size(); ++i)
    if (i == source.size() || source[i] == '\n') {
      m->module.lines.push_back(source.substr(start, i - start));
      start = i + 1;
    }
  try {
    Parser(m->module, text).run();
  } catch (const ParseError &e) {
    copyError(error, errorSize, "PTX " + e.message);
    return nullptr;
  }
  return m.release();
}

extern "C" void ptxUnload(PtxModule *module) { delete module; }

extern "C" int ptxHasKernel(const PtxModule *module, const char *name) {
  auto it = module->module.functionIndex.find(name);
  return it != module->module.functionIndex.end() &&
         module->module.functions[size_t(it->second)].entry &&
         module->module.functions[size_t(it->second)].defined;
}

extern "C" int ptxLaunch(PtxModule *module, const char *kernel, const unsigned grid[3],
                         const unsigned block[3], unsigned dynamicSharedBytes, void **params,
                         const PtxMemory *memory, char *error, size_t errorSize) {
  if (!ptxHasKernel(module, kernel)) {
    copyError(error, errorSize, std::string("no kernel named ") + kernel);
    return 1;
  }
  const Function &f =
      module->module.functions[size_t(module->module.functionIndex.at(kernel))];
  try {
    Launch(module->module, f, grid, block, dynamicSharedBytes, params, *memory).run();
  } catch (const LaunchError &e) {
    copyError(error, errorSize, e.message);
    return 1;
  }
  return 0;
}

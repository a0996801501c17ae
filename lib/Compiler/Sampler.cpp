//===- Sampler.cpp - the generate entry of a denoiser ----------------------===//

#include "hasten/Compiler/Sampler.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace hasten;

namespace {

bool parseNumber(StringRef text, double &value) {
  return !text.trim().getAsDouble(value) && std::isfinite(value);
}

/// The cumulative alphas of a diffusion model's training schedule.
std::vector<double> alphasCumprod(StringRef schedule, double start, double end, int64_t steps) {
  std::vector<double> alphas(steps);
  double product = 1;
  for (int64_t i = 0; i < steps; ++i) {
    double f = steps > 1 ? double(i) / double(steps - 1) : 0;
    double beta = schedule == "linear"
                      ? start + f * (end - start)
                      : std::pow(std::sqrt(start) + f * (std::sqrt(end) - std::sqrt(start)), 2);
    product *= 1 - beta;
    alphas[i] = product;
  }
  return alphas;
}

/// `generate_stream`: the new frame's inputs (`inputs`, `attrs`: the noise,
/// then the conditioning), then one state per input of `frames - 1` frames.
LogicalResult addStreamEntry(ModuleOp module, func::FuncOp denoiser, const SamplerPlan &plan,
                             unsigned sample, unsigned time, ArrayRef<Type> inputs,
                             ArrayRef<DictionaryAttr> attrs, int64_t frames) {
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  Location loc = module.getLoc();
  if (module.lookupSymbol("generate_stream"))
    return emitError(loc) << "the module already has a symbol named 'generate_stream'";
  SmallVector<Type> argTypes(inputs), resultTypes{inputs[0]};
  SmallVector<DictionaryAttr> argAttrs(attrs), resultAttrs;
  if (DictionaryAttr result = denoiser.getResultAttrDict(0))
    resultAttrs.push_back(result);
  else
    resultAttrs.push_back(b.getDictionaryAttr({}));
  auto role = b.getNamedAttr(HastenDialect::kRoleAttrName,
                             b.getStringAttr(stringifyTensorRole(TensorRole::SamplerState)));
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto type = cast<RankedTensorType>(inputs[i]);
    SmallVector<int64_t> shape{frames - 1};
    llvm::append_range(shape, type.getShape());
    auto stateType = RankedTensorType::get(shape, type.getElementType());
    auto name = attrs[i].getAs<StringAttr>(HastenDialect::kOnnxNameAttrName);
    SmallVector<NamedAttribute> stateAttrs{
        b.getNamedAttr(HastenDialect::kOnnxNameAttrName,
                       b.getStringAttr((name.getValue() + "_state").str())),
        role};
    if (auto elem = attrs[i].get(HastenDialect::kOnnxElemTypeAttrName))
      stateAttrs.push_back(b.getNamedAttr(HastenDialect::kOnnxElemTypeAttrName, elem));
    argTypes.push_back(stateType);
    argAttrs.push_back(b.getDictionaryAttr(stateAttrs));
    resultTypes.push_back(stateType);
    resultAttrs.push_back(b.getDictionaryAttr(stateAttrs));
  }
  auto entry = func::FuncOp::create(b, loc, "generate_stream",
                                    b.getFunctionType(argTypes, resultTypes));
  entry.setAllArgAttrs(argAttrs);
  entry.setAllResultAttrs(resultAttrs);
  entry->setAttr(HastenDialect::kEntryKindAttrName,
                 b.getStringAttr(stringifyEntryKind(EntryKind::SamplerStream)));
  Block *body = entry.addEntryBlock();
  b.setInsertionPointToStart(body);
  size_t n = inputs.size();
  ValueRange args = body->getArguments();
  auto stream = SamplerStreamOp::create(
      b, loc, TypeRange(resultTypes), FlatSymbolRefAttr::get(denoiser.getSymNameAttr()),
      args[0], args.slice(1, n - 1), args[n], args.slice(n + 1, n - 1),
      b.getStringAttr(plan.rule), b.getStringAttr(plan.prediction),
      b.getDenseF64ArrayAttr(plan.timesteps), b.getDenseF64ArrayAttr(plan.schedule),
      b.getI64IntegerAttr(sample), b.getI64IntegerAttr(time));
  func::ReturnOp::create(b, loc, stream->getResults());
  return success();
}

} // namespace

int64_t hasten::samplerDenoiserBatch(const SamplerOptions &options) {
  if (options.streamBatch > 0)
    return options.batch * options.streamBatch;
  return options.batch * (options.cfg == "full" ? 2 : 1);
}

bool hasten::parseSampler(const SamplerOptions &options, SamplerPlan &plan, std::string &error) {
  auto [rule, rest] = StringRef(options.spec).split(':');
  plan.rule = rule.str();
  if (rule != "euler-flow" && rule != "ddim" && rule != "consistency") {
    error = "unknown sampler '" + rule.str() + "' (euler-flow, ddim or consistency)";
    return false;
  }
  // key=value pairs; a timestep list continues over the commas.
  std::map<std::string, std::string> keys;
  std::string last;
  SmallVector<StringRef> tokens;
  if (!rest.empty())
    rest.split(tokens, ',');
  for (StringRef token : tokens) {
    auto [key, value] = token.split('=');
    if (token.contains('=')) {
      last = key.trim().str();
      if (keys.count(last)) {
        error = "--sampler gives '" + last + "' twice";
        return false;
      }
      keys[last] = value.trim().str();
    } else if (last == "timesteps") {
      keys[last] += "," + token.trim().str();
    } else {
      error = "--sampler: '" + token.str() + "' is not key=value";
      return false;
    }
  }
  const std::vector<std::string> allowed =
      rule == "euler-flow"
          ? std::vector<std::string>{"steps"}
          : std::vector<std::string>{"steps", "timesteps", "prediction", "beta-schedule",
                                     "beta-start", "beta-end", "train-steps"};
  for (const auto &entry : keys)
    if (!llvm::is_contained(allowed, entry.first)) {
      error = "a " + rule.str() + " sampler takes " + llvm::join(allowed, ", ") + ", not '" +
              entry.first + "'";
      return false;
    }
  auto integer = [&](StringRef key, int64_t fallback, int64_t low, int64_t high,
                     int64_t &value) {
    value = fallback;
    auto it = keys.find(key.str());
    if (it == keys.end())
      return true;
    if (StringRef(it->second).getAsInteger(10, value) || value < low || value > high) {
      error = "--sampler " + key.str() + "=" + it->second + ": not an integer in [" +
              std::to_string(low) + ", " + std::to_string(high) + "]";
      return false;
    }
    return true;
  };
  int64_t steps = 0;
  if (rule == "euler-flow") {
    if (!integer("steps", 4, 1, 1000, steps))
      return false;
    plan.prediction = "velocity";
    for (int64_t i = 0; i <= steps; ++i) {
      double t = double(i) / double(steps);
      if (i < steps)
        plan.timesteps.push_back(t);
      plan.schedule.push_back(t);
    }
  } else {
    int64_t trainSteps = 0;
    if (!integer("train-steps", 1000, 2, 100000, trainSteps))
      return false;
    plan.prediction = keys.count("prediction") ? keys["prediction"] : "eps";
    if (plan.prediction != "eps" && plan.prediction != "v" && plan.prediction != "sample") {
      error = "--sampler prediction=" + plan.prediction + ": not eps, v or sample";
      return false;
    }
    std::string schedule = keys.count("beta-schedule") ? keys["beta-schedule"] : "scaled-linear";
    if (schedule != "scaled-linear" && schedule != "linear") {
      error = "--sampler beta-schedule=" + schedule + ": not scaled-linear or linear";
      return false;
    }
    double start = schedule == "linear" ? 1e-4 : 0.00085, end = schedule == "linear" ? 0.02 : 0.012;
    if ((keys.count("beta-start") && !parseNumber(keys["beta-start"], start)) ||
        (keys.count("beta-end") && !parseNumber(keys["beta-end"], end)) || start <= 0 ||
        end <= 0 || start >= 1 || end >= 1) {
      error = "--sampler beta-start and beta-end must be numbers in (0, 1)";
      return false;
    }
    if (keys.count("timesteps") && keys.count("steps")) {
      error = "--sampler takes timesteps= or steps=, not both";
      return false;
    }
    if (keys.count("timesteps")) {
      SmallVector<StringRef> values;
      StringRef(keys["timesteps"]).split(values, ',');
      for (StringRef v : values) {
        int64_t t = 0;
        if (v.trim().getAsInteger(10, t) || t < 0 || t >= trainSteps ||
            (!plan.timesteps.empty() && double(t) >= plan.timesteps.back())) {
          error = "--sampler timesteps=" + keys["timesteps"] +
                  ": not decreasing integers in [0, " + std::to_string(trainSteps) + ")";
          return false;
        }
        plan.timesteps.push_back(double(t));
      }
    } else {
      if (!integer("steps", rule == "ddim" ? 4 : 1, 1, trainSteps, steps))
        return false;
      if (rule == "ddim") {
        // Trailing spacing: the last training step first.
        for (int64_t i = 0; i < steps; ++i)
          plan.timesteps.push_back(
              std::round(double(trainSteps) - double(i) * double(trainSteps) / double(steps)) - 1);
      } else {
        // LCM's: every (50 / steps)-th of 50 timesteps spaced
        // trainSteps / 50 apart, from the last.
        int64_t origin = std::min<int64_t>(50, trainSteps), spacing = trainSteps / origin;
        int64_t skip = std::max<int64_t>(1, origin / steps);
        if (steps > origin) {
          error = "a consistency sampler takes at most " + std::to_string(origin) + " steps";
          return false;
        }
        for (int64_t i = 0; i < steps; ++i)
          plan.timesteps.push_back(double(spacing * (origin - i * skip) - 1));
      }
    }
    std::vector<double> alphas = alphasCumprod(schedule, start, end, trainSteps);
    for (double t : plan.timesteps)
      plan.schedule.push_back(alphas[int64_t(t)]);
    plan.schedule.push_back(1.0);
  }

  if (options.cfg != "none" && options.cfg != "full" && options.cfg != "rcfg-self" &&
      options.cfg != "rcfg-onetime") {
    error = "--cfg=" + options.cfg + ": not none, full, rcfg-self or rcfg-onetime";
    return false;
  }
  if (StringRef(options.cfg).starts_with("rcfg") && plan.prediction != "eps") {
    error = "--cfg=" + options.cfg + " needs an eps-prediction ddim or consistency sampler";
    return false;
  }
  if (!std::isfinite(options.cfgScale)) {
    error = "--cfg-scale must be a finite number";
    return false;
  }
  if (options.streamBatch) {
    if (options.streamBatch != int64_t(plan.timesteps.size()) || options.streamBatch < 2) {
      error = "--stream-batch=" + std::to_string(options.streamBatch) +
              " must equal the sampler's steps (" + std::to_string(plan.timesteps.size()) +
              ", at least 2): one frame in flight per step";
      return false;
    }
    if (plan.rule == "consistency" || options.cfg != "none") {
      error = "--stream-batch runs ddim and euler-flow samplers without CFG";
      return false;
    }
  }
  if (options.batch < 1) {
    error = "--sampler-batch must be at least 1";
    return false;
  }
  if (!options.inputs.empty()) {
    SmallVector<StringRef> bindings;
    StringRef(options.inputs).split(bindings, ',');
    for (StringRef binding : bindings) {
      auto [key, name] = binding.split('=');
      key = key.trim();
      name = name.trim();
      if (name.empty() || (key != "x" && key != "t" && key != "cond")) {
        error = "--sampler-inputs expects x=NAME, t=NAME and cond=NAME, got '" + binding.str() +
                "'";
        return false;
      }
      if (key == "x")
        plan.sampleInput = name.str();
      else if (key == "t")
        plan.timeInput = name.str();
      else
        plan.conditioningInputs.push_back(name.str());
    }
  }
  return true;
}

LogicalResult hasten::addSamplerEntry(ModuleOp module, const SamplerOptions &options,
                                      const SamplerPlan &plan) {
  auto denoiser = module.lookupSymbol<func::FuncOp>("main");
  Location loc = module.getLoc();
  if (!denoiser || denoiser.isExternal())
    return emitError(loc) << "--sampler needs the denoiser's graph as the module's 'main'";
  if (module.lookupSymbol("generate"))
    return emitError(loc) << "the module already has a symbol named 'generate'";
  if (denoiser.getNumResults() != 1)
    return emitError(loc) << "--sampler needs a denoiser with one output (the prediction), "
                          << "this one has " << denoiser.getNumResults();
  auto nameOf = [&](unsigned i) {
    auto name = denoiser.getArgAttrOfType<StringAttr>(i, HastenDialect::kOnnxNameAttrName);
    return name ? name.getValue() : StringRef();
  };
  std::optional<unsigned> sample, time;
  std::vector<std::string> names;
  for (unsigned i = 0; i < denoiser.getNumArguments(); ++i) {
    names.push_back(nameOf(i).str());
    if (nameOf(i) == plan.sampleInput)
      sample = i;
    if (nameOf(i) == plan.timeInput)
      time = i;
  }
  std::string inputs = llvm::join(names, ", ");
  if (!sample || !time)
    return emitError(loc) << "the denoiser has no input '"
                          << (!sample ? plan.sampleInput : plan.timeInput)
                          << "' (its inputs: " << inputs
                          << "); name the sampled and time inputs with --sampler-inputs "
                             "x=NAME,t=NAME";
  for (const std::string &cond : plan.conditioningInputs)
    if (!llvm::is_contained(names, cond) || cond == plan.sampleInput || cond == plan.timeInput)
      return emitError(loc) << "--sampler-inputs cond=" << cond
                            << " is not one of the denoiser's other inputs (" << inputs << ")";
  if (!plan.conditioningInputs.empty())
    for (const std::string &name : names)
      if (name != plan.sampleInput && name != plan.timeInput &&
          !llvm::is_contained(plan.conditioningInputs, name))
        return emitError(loc) << "the denoiser's input '" << name
                              << "' is not bound: add cond=" << name << " to --sampler-inputs";

  // Rows of the denoiser per sample: 2 with full CFG, the frames in flight
  // with a stream batch.
  int64_t factor = samplerDenoiserBatch(options) / options.batch;
  auto sampleType = cast<RankedTensorType>(denoiser.getArgumentTypes()[*sample]);
  if (!sampleType.hasStaticShape() || sampleType.getRank() == 0 ||
      sampleType.getDimSize(0) != samplerDenoiserBatch(options))
    return emitError(loc) << "the denoiser's input '" << plan.sampleInput << "' is "
                          << sampleType << "; the sampler needs a static shape with batch "
                          << samplerDenoiserBatch(options);
  auto halve = [&](Type type) -> FailureOr<RankedTensorType> {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape() || tensor.getRank() == 0 ||
        tensor.getDimSize(0) % factor)
      return failure();
    SmallVector<int64_t> shape(tensor.getShape());
    shape[0] /= factor;
    return RankedTensorType::get(shape, tensor.getElementType());
  };

  OpBuilder b(module.getContext());
  auto role = [&](TensorRole r) {
    return b.getNamedAttr(HastenDialect::kRoleAttrName, b.getStringAttr(stringifyTensorRole(r)));
  };
  auto nameAttr = [&](StringRef name) {
    return b.getNamedAttr(HastenDialect::kOnnxNameAttrName, b.getStringAttr(name));
  };
  auto elemAttr = [&](unsigned i) -> std::optional<NamedAttribute> {
    if (auto elem = denoiser.getArgAttr(i, HastenDialect::kOnnxElemTypeAttrName))
      return b.getNamedAttr(HastenDialect::kOnnxElemTypeAttrName, elem);
    return std::nullopt;
  };
  SmallVector<Type> argTypes;
  SmallVector<DictionaryAttr> argAttrs;
  auto addArg = [&](Type type, SmallVector<NamedAttribute> attrs) {
    argTypes.push_back(type);
    argAttrs.push_back(b.getDictionaryAttr(attrs));
  };
  SmallVector<NamedAttribute> sampleAttrs{nameAttr(plan.sampleInput),
                                          role(TensorRole::SamplerNoise)};
  if (auto elem = elemAttr(*sample))
    sampleAttrs.push_back(*elem);
  RankedTensorType perSample = *halve(sampleType);
  addArg(perSample, sampleAttrs);
  SmallVector<unsigned> conditioning;
  for (unsigned i = 0; i < denoiser.getNumArguments(); ++i) {
    if (i == *sample || i == *time)
      continue;
    FailureOr<RankedTensorType> type = halve(denoiser.getArgumentTypes()[i]);
    if (failed(type))
      return emitError(loc) << "the denoiser's input '" << nameOf(i) << "' is "
                            << denoiser.getArgumentTypes()[i]
                            << "; conditioning needs a static shape with the sample's batch";
    SmallVector<NamedAttribute> attrs{nameAttr(nameOf(i))};
    if (auto elem = elemAttr(i))
      attrs.push_back(*elem);
    addArg(*type, attrs);
    conditioning.push_back(i);
  }
  bool negative = options.cfg == "full" || options.cfg == "rcfg-onetime";
  if (negative)
    for (unsigned i : conditioning) {
      SmallVector<NamedAttribute> attrs{nameAttr(("negative_" + nameOf(i)).str())};
      if (auto elem = elemAttr(i))
        attrs.push_back(*elem);
      addArg(*halve(denoiser.getArgumentTypes()[i]), attrs);
    }
  size_t steps = plan.timesteps.size();
  bool renoise = plan.rule == "consistency" && steps > 1;
  if (renoise) {
    SmallVector<int64_t> shape{int64_t(steps) - 1};
    llvm::append_range(shape, perSample.getShape());
    SmallVector<NamedAttribute> attrs{nameAttr("renoise"), role(TensorRole::SamplerNoise)};
    if (auto elem = elemAttr(*sample))
      attrs.push_back(*elem);
    addArg(RankedTensorType::get(shape, perSample.getElementType()), attrs);
  }

  b.setInsertionPointToEnd(module.getBody());
  if (options.streamBatch > 0)
    return addStreamEntry(module, denoiser, plan, *sample, *time, argTypes, argAttrs,
                          options.streamBatch);
  auto generate = func::FuncOp::create(b, loc, "generate", b.getFunctionType(argTypes, {perSample}));
  generate.setAllArgAttrs(argAttrs);
  generate->setAttr(HastenDialect::kEntryKindAttrName,
                    b.getStringAttr(stringifyEntryKind(EntryKind::Generate)));
  if (DictionaryAttr result = denoiser.getResultAttrDict(0))
    generate.setResultAttrs(0, result);
  Block *body = generate.addEntryBlock();
  b.setInsertionPointToStart(body);
  size_t numCond = conditioning.size();
  ValueRange args = body->getArguments();
  ValueRange cond = args.slice(1, numCond);
  ValueRange neg = negative ? args.slice(1 + numCond, numCond) : ValueRange();
  Value renoiseValue = renoise ? args.back() : Value();
  auto loop = SamplerLoopOp::create(
      b, loc, perSample, FlatSymbolRefAttr::get(denoiser.getSymNameAttr()), args[0], cond, neg,
      renoiseValue, b.getStringAttr(plan.rule), b.getStringAttr(plan.prediction),
      b.getDenseF64ArrayAttr(plan.timesteps), b.getDenseF64ArrayAttr(plan.schedule),
      b.getI64IntegerAttr(*sample), b.getI64IntegerAttr(*time), b.getStringAttr(options.cfg),
      b.getF64FloatAttr(options.cfgScale));
  func::ReturnOp::create(b, loc, loop.getResult());
  return success();
}

// The history format: lines round-trip, operations pair up, and malformed
// files are refused with the number of the offending line.
#include <sstream>

#include <catch2/catch.hpp>

#include "chaos/check/history.h"

using namespace bulwark;
using namespace bulwark::chaos::check;

namespace {

std::string TestData(const std::string& name) {
  return std::string(BULWARK_SOURCE_DIR) + "/tests/testdata/chaos/" + name;
}

Result<std::vector<Operation>> Pair(const std::string& text) {
  std::istringstream in(text);
  auto events = ParseHistory(in);
  if (!events.ok()) return events.status();
  return PairOperations(*events);
}

}  // namespace

TEST_CASE("An event survives FormatEvent and ParseEvent unchanged") {
  Event e;
  e.process = 7;
  e.type = EventType::kOk;
  e.f = "cas";
  e.key = "k\"1";
  e.value = nlohmann::json::array({1, nullptr});
  e.consistency = "Strong";
  e.region = "r1";
  e.time_ns = 123456789012;
  e.session = 3;
  e.glsn = 42;
  e.error = "PreconditionFailed: etag";
  auto back = ParseEvent(FormatEvent(e), 9);
  REQUIRE(back.ok());
  CHECK(back->process == 7);
  CHECK(back->type == EventType::kOk);
  CHECK(back->f == "cas");
  CHECK(back->key == "k\"1");
  CHECK(back->value == e.value);
  CHECK(back->consistency == "Strong");
  CHECK(back->region == "r1");
  CHECK(back->time_ns == 123456789012);
  CHECK(back->session == 3);
  CHECK(back->glsn == 42u);
  CHECK(back->error == e.error);
  CHECK(back->line == 9);
}

TEST_CASE("Invokes and completions pair into operations, info never completes") {
  auto ops = Pair(R"({"process":1,"type":"invoke","f":"write","key":"x","value":5,"time":10}
{"process":2,"type":"invoke","f":"read","key":"x","value":null,"time":11}

{"process":2,"type":"ok","f":"read","key":"x","value":5,"time":20}
{"process":1,"type":"info","f":"write","key":"x","value":5,"time":30}
{"process":3,"type":"invoke","f":"read","key":"x","value":null,"time":40}
)");
  REQUIRE(ops.ok());
  REQUIRE(ops->size() == 3);
  CHECK((*ops)[0].outcome == EventType::kInfo);
  CHECK((*ops)[0].complete_ns == kNeverCompleted);
  CHECK((*ops)[0].complete_line == 5);
  CHECK((*ops)[1].output == 5);
  CHECK((*ops)[1].invoke_line == 2);
  CHECK((*ops)[1].complete_line == 4);  // the blank line still counts
  // No completion at all: unknown, like info.
  CHECK((*ops)[2].outcome == EventType::kInfo);
  CHECK((*ops)[2].complete_line == 0);
}

TEST_CASE("A malformed history names the line that is wrong") {
  auto events = ParseHistoryFile(TestData("malformed_line3.jsonl"));
  REQUIRE_FALSE(events.ok());
  CHECK(events.status().code() == Code::kInvalidArgument);
  CHECK(events.status().message().find("line 3") != std::string::npos);
  CHECK(events.status().message().find("`time`") != std::string::npos);

  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":1}\nnot json\n", "line 2: not valid JSON"},
      {"[1,2]\n", "line 1: not a JSON object"},
      {"{\"process\":\"a\",\"type\":\"invoke\",\"f\":\"read\",\"time\":1}\n", "line 1: `process`"},
      {"{\"process\":1,\"type\":\"done\",\"f\":\"read\",\"time\":1}\n", "line 1: `type` must be"},
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"\",\"time\":1}\n", "line 1: `f`"},
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":[1],\"time\":1}\n", "line 1: `key`"},
      {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time\":1,\"glsn\":-4}\n", "line 1: `glsn`"},
  };
  for (const Case& c : cases) {
    std::istringstream in(c.text);
    auto parsed = ParseHistory(in);
    INFO(c.text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().message().find(c.expect) != std::string::npos);
  }
}

TEST_CASE("Histories that break the pairing rules are refused with the line") {
  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {"{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time\":1}\n", "line 1: ok without an outstanding invoke"},
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":1}\n"
       "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":2}\n",
       "line 2: process 1 already has an operation outstanding (line 1)"},
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":1}\n"
       "{\"process\":1,\"type\":\"ok\",\"f\":\"write\",\"time\":2}\n",
       "line 2: completes `write` but the invoke was `read`"},
      {"{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":5}\n"
       "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time\":4}\n",
       "line 2: time goes backwards"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto ops = Pair(c.text);
    REQUIRE_FALSE(ops.ok());
    CHECK(ops.status().message().find(c.expect) != std::string::npos);
  }
  // The issue's rule: a process that saw info never issues another operation.
  auto events = ParseHistoryFile(TestData("reuse_after_info.jsonl"));
  REQUIRE(events.ok());
  auto ops = PairOperations(*events);
  REQUIRE_FALSE(ops.ok());
  CHECK(ops.status().message().find("line 3: process 0 saw info on line 2") != std::string::npos);
}

TEST_CASE("A missing history file is NotFound, naming the file") {
  auto events = ParseHistoryFile("/nonexistent/history.jsonl");
  REQUIRE_FALSE(events.ok());
  CHECK(events.status().code() == Code::kNotFound);
  CHECK(events.status().message().find("/nonexistent/history.jsonl") != std::string::npos);
}

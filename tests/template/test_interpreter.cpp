#include <gtest/gtest.h>

#include "template/chat_template.h"

namespace marlin {
namespace {

std::string render(const std::string& source, const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  return ChatTemplate(source).render(context);
}

TEST(TemplateInterpreter, Smoke) { EXPECT_EQ(render("Hello {{ name }}!", {{"name", "world"}}), "Hello world!"); }

}  // namespace
}  // namespace marlin

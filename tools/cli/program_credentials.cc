// --tenant and --secret_file, in a file of their own (as --transport): only
// the client binaries link this object and list the flags.
#include "base/flag_check.h"
#include "tools/cli/program.h"
#include "verbs/auth.h"

DEFINE_string(tenant, "",
              "the tenant to authenticate as (the memnode's --tenants_file); empty: anonymous (a memnode "
              "without tenants)");
DEFINE_string(secret_file, "",
              "file holding the tenant's secret as hex (mode 0600 or stricter); the secret is never a flag");

namespace sharry::cli {

void CredentialsFromFlags(std::string_view program, std::string_view tenant_override, std::string* tenant,
                          auth::Secret* secret) {
  namespace f = sharry::flags;
  const std::string name = tenant_override.empty() ? FLAGS_tenant : std::string(tenant_override);
  if (name.empty()) {
    if (!FLAGS_secret_file.empty())
      f::ExitOnBadFlags(program, Status::InvalidArgument("--secret_file=" + FLAGS_secret_file +
                                                         " without --tenant: say which tenant the secret is for"));
    return;
  }
  if (Status s = auth::CheckTenantName(name); !s.ok())
    f::ExitOnBadFlags(program, Status::InvalidArgument("--tenant=" + name + ": " + s.message()));
  if (FLAGS_secret_file.empty())
    f::ExitOnBadFlags(program, Status::InvalidArgument("--tenant=" + name + " needs --secret_file (the secret is "
                                                       "never given on the command line)"));
  auto s = auth::ReadSecretFile(FLAGS_secret_file);
  if (!s.ok()) f::ExitOnBadFlags(program, s.status());
  *tenant = name;
  *secret = std::move(*s);
}

}  // namespace sharry::cli

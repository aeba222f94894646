import { PasswordForm } from "../components/PasswordForm";
import { Card, PageHeader } from "../components/ui";

export default function ChangePassword() {
  return (
    <div className="max-w-lg">
      <PageHeader title="Change password" description="Changing it signs out your other sessions; your API keys keep working." />
      <Card>
        <PasswordForm />
      </Card>
    </div>
  );
}

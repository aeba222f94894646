import { useEffect } from "react";
import { Button } from "../components/form";
import { PasswordForm } from "../components/PasswordForm";
import { useSession } from "../lib/session";

/** Shown instead of the app while the user's password is temporary. */
export default function ForcedPasswordChange() {
  const { user, logout } = useSession();
  useEffect(() => {
    document.title = "Choose a new password · Albatross";
  }, []);
  return (
    <main className="flex min-h-dvh items-center justify-center px-4 py-10">
      <div className="w-full max-w-md rounded-lg bg-white p-6 shadow-sm ring-1 ring-slate-200">
        <h1 className="text-xl font-bold">Choose a new password</h1>
        <p className="mt-1 mb-5 text-sm text-slate-600">
          {user ? `Welcome, ${user.display_name}. ` : ""}Your password is temporary: set your own before you continue.
        </p>
        <PasswordForm submitLabel="Save and continue" />
        <div className="mt-6 border-t border-slate-200 pt-4">
          <Button variant="ghost" onClick={() => void logout()}>
            Sign out
          </Button>
        </div>
      </div>
    </main>
  );
}

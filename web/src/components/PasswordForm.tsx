import { useState, type FormEvent } from "react";
import { get, post } from "../lib/api";
import { formErrorsFromError, type FormErrors } from "../lib/problem";
import { useSession } from "../lib/session";
import type { User } from "../lib/types";
import { Alert, Button, TextField } from "./form";

const FIELDS = ["current_password", "new_password", "confirm"] as const;
const NONE: FormErrors = { fields: {}, general: [] };

/** Changes the signed-in user's own password (POST /users/{id}/password). */
export function PasswordForm({ onDone, submitLabel = "Change password" }: { onDone?: () => void; submitLabel?: string }) {
  const { user, setUser } = useSession();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirm, setConfirm] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors>(NONE);
  const [done, setDone] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!user) return;
    const local: Record<string, string> = {};
    if (!current) local.current_password = "Enter your current password.";
    if (next.length < 12) local.new_password = "Use at least 12 characters.";
    else if (next.length > 256) local.new_password = "Use at most 256 characters.";
    else if (next === current) local.new_password = "Choose a password different from the current one.";
    if (confirm !== next) local.confirm = "The two new passwords do not match.";
    if (Object.keys(local).length) {
      setErrors({ fields: local, general: [] });
      return;
    }
    setBusy(true);
    setErrors(NONE);
    try {
      await post(`/users/${encodeURIComponent(user.id)}/password`, { current_password: current, new_password: next });
      // Read our own write: /me reflects must_change_password = false.
      const me = await get<User>("/me").catch(() => ({ ...user, must_change_password: false }));
      setUser({ ...me, must_change_password: false });
      setCurrent("");
      setNext("");
      setConfirm("");
      setDone(true);
      onDone?.();
    } catch (error) {
      setErrors(formErrorsFromError(error, FIELDS));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} noValidate className="space-y-4">
      {done && <Alert kind="success">Your password has been changed. Your other sessions were signed out.</Alert>}
      {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
      <TextField
        label="Current password"
        name="current_password"
        type="password"
        autoComplete="current-password"
        value={current}
        onChange={(e) => setCurrent(e.target.value)}
        error={errors.fields.current_password}
      />
      <TextField
        label="New password"
        name="new_password"
        type="password"
        autoComplete="new-password"
        hint="12 to 256 characters. A few unrelated words make a strong one."
        value={next}
        onChange={(e) => setNext(e.target.value)}
        error={errors.fields.new_password}
      />
      <TextField
        label="Repeat the new password"
        name="confirm"
        type="password"
        autoComplete="new-password"
        value={confirm}
        onChange={(e) => setConfirm(e.target.value)}
        error={errors.fields.confirm}
      />
      <Button type="submit" busy={busy}>
        {submitLabel}
      </Button>
    </form>
  );
}

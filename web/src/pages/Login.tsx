import { useEffect, useRef, useState, type FormEvent } from "react";
import { Alert, Button, TextField } from "../components/form";
import { post } from "../lib/api";
import { ApiError, formErrorsFromError, type FormErrors } from "../lib/problem";
import { useRouter } from "../lib/router";
import { useSession } from "../lib/session";
import type { LoginResponse } from "../lib/types";

const FIELDS = ["email", "password"] as const;

export default function LoginPage() {
  const { login, notice } = useSession();
  const { location, navigate } = useRouter();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors>({ fields: {}, general: [] });
  const emailRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    document.title = "Sign in · Albatross";
    emailRef.current?.focus();
  }, []);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErrors({ fields: {}, general: [] });
    try {
      const { data } = await post<LoginResponse>("/auth/login", { email: email.trim(), password });
      login(data);
      const next = location.search.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
    } catch (error) {
      if (error instanceof ApiError && error.code === "unauthorized") {
        setErrors({ fields: {}, general: ["The email or password is not right. Check both and try again."] });
      } else {
        setErrors(formErrorsFromError(error, FIELDS));
      }
      setBusy(false);
    }
  }

  return (
    <main className="flex min-h-dvh items-center justify-center px-4 py-10">
      <div className="w-full max-w-sm">
        <div className="mb-8 text-center">
          <div aria-hidden="true" className="mx-auto mb-3 flex size-12 items-center justify-center rounded-full bg-sky-700 text-2xl text-white">
            ✈
          </div>
          <h1 className="text-2xl font-bold tracking-tight">Sign in to Albatross</h1>
          <p className="mt-1 text-sm text-slate-600">Flight reports for your virtual airline</p>
        </div>
        <form onSubmit={submit} noValidate className="space-y-4 rounded-lg bg-white p-6 shadow-sm ring-1 ring-slate-200">
          {notice && <Alert kind="info">{notice}</Alert>}
          {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
          <TextField
            ref={emailRef}
            label="Email"
            name="email"
            type="email"
            autoComplete="username"
            inputMode="email"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            error={errors.fields.email}
          />
          <TextField
            label="Password"
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            error={errors.fields.password}
          />
          <Button type="submit" className="w-full" busy={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </Button>
        </form>
      </div>
    </main>
  );
}
